import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketApi } from "../../../agent/api/socket-api.js";
import { SocketClient } from "../../../agent/client/socket-client.js";
import type { StreamResult } from "../../../agent/client/stream-client.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import type { AgentModelRuntime } from "../../../agent/runtime/runtime.js";
import type { SequenceStore } from "../../../agent/runtime/sequence-store.js";
import { type TempModels, tempModels } from "./fixtures.js";
import {
  FRAME,
  frameOf,
  installStateful,
  referenceProbabilities,
  serveSequences,
  speechLikeWave,
} from "./sequence-fixtures.js";

const input = (frame: Float32Array) => [
  { name: "input", datatype: "FP32", shape: [1, FRAME], data: Array.from(frame) },
];
const prob = (r: StreamResult) => {
  if ("error" in r) throw new Error(`${r.code}: ${r.error}`);
  return r.outputs.find((o) => o.name === "output")!.data[0] as number;
};

/** Issue 18 §3: streams over the agent socket (NDJSON both ways) and the client's helpers. */
describe("streams and the client's sequence helpers (Silero VAD)", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let api: SocketApi;
  let client: SocketClient;
  let store: SequenceStore;
  let v1: LoadedVersion | undefined;
  const serving = async () => {
    v1 ??= await runtime.load(await installStateful(models, "1.0.0", { maxSequences: 4 }));
    if (!runtime.serving().has("vad")) await runtime.activate(v1);
  };

  beforeAll(async () => {
    models = await tempModels();
    let sock: string;
    ({ socketPath: sock, runtime, store, api } = await serveSequences(models));
    client = new SocketClient(sock);
  });
  afterAll(async () => {
    await api?.close();
    await runtime?.close();
    await models?.cleanup();
  });

  it("client.sequence sends only the frames and gets the reference probabilities", async () => {
    await serving();
    const wave = speechLikeWave(21, 8);
    const [expected] = await referenceProbabilities([wave]);
    const seq = client.sequence("vad");
    const got: number[] = [];
    for (let n = 0; n < 7; n++) got.push(prob(await seq.infer(input(frameOf(wave, n)))));
    got.push(prob(await seq.end(input(frameOf(wave, 7)))));
    expect(got).toEqual(expected);
    expect(store.live("vad")).toBe(0);
  });

  it("streams frames in and answers out on one connection, equal to the reference, and ends the sequence", async () => {
    await serving();
    const waves = [speechLikeWave(31, 40), speechLikeWave(32, 40)];
    const expected = await referenceProbabilities(waves);
    const got = await Promise.all(
      waves.map(async (wave) => {
        const s = client.stream("vad");
        const writer = (async () => {
          for (let n = 0; n < 40; n++) await s.write(input(frameOf(wave, n)));
          await s.end();
        })();
        const probs: number[] = [];
        for await (const r of s.results()) probs.push(prob(r));
        await writer;
        return probs;
      }),
    );
    expect(got).toEqual(expected);
    expect(store.live("vad")).toBe(0);
  });

  it("applies back-pressure to an app that does not read: the agent stops running frames, then catches up", async () => {
    await serving();
    const FRAMES = 600;
    const wave = speechLikeWave(41, FRAMES);
    let ran = 0;
    const stop = runtime.observe(() => ran++);
    try {
      const s = client.stream("vad");
      // Every answer carries the 256-float state too (~5 kB a line): socket buffers fill after a few dozen.
      const writer = (async () => {
        for (let n = 0; n < FRAMES; n++) await s.write(input(frameOf(wave, n)), { outputs: ["output", "stateN"] });
        await s.end();
      })();
      let last = -1;
      while (ran !== last) {
        last = ran;
        await sleep(300);
      }
      // Stalled well short of the whole stream while nobody reads.
      expect(ran).toBeLessThan(FRAMES / 2);
      const probs: number[] = [];
      for await (const r of s.results()) probs.push(prob(r));
      await writer;
      expect(probs).toEqual((await referenceProbabilities([wave]))[0]);
      expect(ran).toBe(FRAMES);
    } finally {
      stop();
    }
  });

  it("answers a stream that cannot start with an HTTP error, and a bad frame with an error line", async () => {
    await serving();
    const blockers = Array.from({ length: 4 }, () => client.sequence("vad"));
    const frame = input(frameOf(speechLikeWave(5, 1), 0));
    for (const b of blockers) await b.infer(frame);
    const refused = client.stream("vad");
    await refused.write(frame);
    await refused.end();
    await expect(refused.results().next()).rejects.toMatchObject({ status: 429, body: { code: "SEQUENCE_LIMIT" } });
    for (const b of blockers) await b.end(frame);
    const s = client.stream("vad");
    await s.write(frame);
    await s.write([{ name: "input", datatype: "FP32", shape: [1, 3], data: [1, 2, 3] }]);
    await s.write(frame);
    await s.end();
    const lines: StreamResult[] = [];
    for await (const r of s.results()) lines.push(r);
    expect(lines.map((l) => ("error" in l ? l.code : "ok"))).toEqual(["ok", "INVALID_TENSOR", "ok"]);
  });
});
