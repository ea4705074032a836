import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketApi } from "../../../agent/api/socket-api.js";
import { createDriftMonitor } from "../../../agent/drift/drift-monitor.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import type { AgentModelRuntime } from "../../../agent/runtime/runtime.js";
import { createSequenceStore, recordedAsApi, type SequenceStore } from "../../../agent/runtime/sequence-store.js";
import { createInferenceRecorder } from "../../../agent/telemetry/inference-recorder.js";
import { openTelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import { createFakeClock } from "../../../shared/clock.js";
import { type TempModels, tempModels, testLog } from "./fixtures.js";
import {
  frameBody,
  frameOf,
  installStateful,
  post,
  probability,
  referenceProbabilities,
  serveSequences,
  speechLikeWave,
} from "./sequence-fixtures.js";

const SEQUENCES = 10;
const FRAMES = 30;
const INFER = "/v2/models/vad/infer";

/**
 * Issue 18: sequences with implicit state over the real agent socket, Silero VAD v5 in a real model
 * host. The reference is onnxruntime in this process with a loop that carries the state itself.
 */
describe("sequences with implicit state (Silero VAD over the agent socket)", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let api: SocketApi;
  let sock: string;
  let v1: LoadedVersion | undefined;
  const clock = createFakeClock(1_000);
  let store: SequenceStore;
  const serving = async () => {
    v1 ??= await runtime.load(await installStateful(models, "1.0.0", { maxSequences: 12, idleTimeoutSeconds: 5 }));
    if (!runtime.serving().has("vad")) await runtime.activate(v1);
    return v1;
  };

  beforeAll(async () => {
    models = await tempModels();
    // The store's clock is fake: expiry is driven by the test, never by waiting.
    ({ socketPath: sock, runtime, store, api } = await serveSequences(models, clock));
  });
  afterAll(async () => {
    await api?.close();
    await runtime?.close();
    await models?.cleanup();
  });

  it("gives per-frame probabilities equal to an in-process loop carrying the state, for 10 concurrent sequences", async () => {
    await serving();
    const waves = Array.from({ length: SEQUENCES }, (_, s) => speechLikeWave(100 + s, FRAMES));
    const expected = await referenceProbabilities(waves);
    // The waveform has both speech and silence in it: a VAD that said the same for every frame would
    // not tell a carried state from a reset one.
    const flat = expected.flat();
    expect(Math.max(...flat)).toBeGreaterThan(0.5);
    expect(Math.min(...flat)).toBeLessThan(0.1);
    // Sequence frames are recorded like any request (telemetry, drift, cost and probation read these).
    let recorded = 0;
    const stop = runtime.observe((r) => {
      if (r.ok && r.installed.version === "1.0.0" && !r.probe) recorded++;
    });
    // Every sequence sends its frames one after the other; the 10 sequences run at the same time.
    const got = await Promise.all(
      waves.map(async (wave, s) => {
        const probs: number[] = [];
        for (let n = 0; n < FRAMES; n++) {
          const r = await post(sock, INFER, frameBody(`seq-${s}`, frameOf(wave, n), n === 0, n === FRAMES - 1));
          probs.push(probability(r));
        }
        return probs;
      }),
    );
    stop();
    expect(got).toEqual(expected);
    expect(recorded).toBe(SEQUENCES * FRAMES);
    expect(store.live("vad")).toBe(0);
  });

  it("keeps frames of one sequence in order when the app sends them without waiting", async () => {
    await serving();
    const wave = speechLikeWave(7, 12);
    const [expected] = await referenceProbabilities([wave]);
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, n) =>
        post(sock, INFER, frameBody("pipelined", frameOf(wave, n), n === 0, n === 11)),
      ),
    );
    expect(replies.map(probability)).toEqual(expected);
  });

  it("refuses a frame of a sequence never started, and the app's own copy of the state", async () => {
    await serving();
    const frame = speechLikeWave(3, 1);
    const unknown = await post(sock, INFER, frameBody("never-started", frame, false, false));
    expect(unknown).toMatchObject({ status: 409, body: { code: "SEQUENCE_UNKNOWN" } });
    const withState = frameBody("state-sent", frame, true, false);
    withState.inputs.push({ name: "state", datatype: "FP32", shape: [2, 1, 128], data: new Array(256).fill(0) });
    expect((await post(sock, INFER, withState)).status).toBe(400);
    // A refused start leaves nothing behind.
    expect((await post(sock, INFER, frameBody("state-sent", frame, false, true))).body.code).toBe("SEQUENCE_UNKNOWN");
  });

  it("bounds live sequences per model (SEQUENCE_LIMIT) and expires idle ones", async () => {
    await serving();
    const frame = frameOf(speechLikeWave(5, 1), 0);
    for (let i = 0; i < 12; i++)
      expect((await post(sock, INFER, frameBody(`cap-${i}`, frame, true, false))).status).toBe(200);
    const over = await post(sock, INFER, frameBody("cap-over", frame, true, false));
    expect(over).toMatchObject({ status: 429, body: { code: "SEQUENCE_LIMIT" } });
    // Ending one frees its slot.
    expect((await post(sock, INFER, frameBody("cap-0", frame, false, true))).status).toBe(200);
    expect((await post(sock, INFER, frameBody("cap-over", frame, true, false))).status).toBe(200);
    // The manifest says 5 s idle: at 4.9 s they live, at 5 s they are gone (agent and host).
    clock.advance(4_900);
    expect((await post(sock, INFER, frameBody("cap-1", frame, false, false))).status).toBe(200);
    clock.advance(100);
    expect(store.live("vad")).toBe(1); // cap-1 was used 100 ms ago
    expect((await post(sock, INFER, frameBody("cap-2", frame, false, false))).body.code).toBe("SEQUENCE_UNKNOWN");
    clock.advance(5_000);
    expect(store.live("vad")).toBe(0);
    expect((await post(sock, INFER, frameBody("cap-1", frame, false, false))).body.code).toBe("SEQUENCE_UNKNOWN");
  });

  it("fails the live sequences of a SIGKILLed host with SEQUENCE_LOST, and new ones work at once", async () => {
    const v = await serving();
    const wave = speechLikeWave(11, 4);
    for (const id of ["k-a", "k-b"])
      expect((await post(sock, INFER, frameBody(id, frameOf(wave, 0), true, false))).status).toBe(200);
    const pid = runtime.hostPid(v);
    process.kill(pid, "SIGKILL");
    const lost = await post(sock, INFER, frameBody("k-a", frameOf(wave, 1), false, false));
    expect(lost).toMatchObject({ status: 409, body: { code: "SEQUENCE_LOST" } });
    expect((await post(sock, INFER, frameBody("k-b", frameOf(wave, 1), false, false))).body.code).toBe("SEQUENCE_LOST");
    // Still lost on the next frame: the app learns it must start again, not that it never existed.
    expect((await post(sock, INFER, frameBody("k-a", frameOf(wave, 2), false, false))).body.code).toBe("SEQUENCE_LOST");
    expect(runtime.hostPid(v)).not.toBe(pid);
    const [expected] = await referenceProbabilities([wave]);
    const fresh: number[] = [];
    for (let n = 0; n < 4; n++)
      fresh.push(probability(await post(sock, INFER, frameBody("k-a", frameOf(wave, n), n === 0, n === 3))));
    expect(fresh).toEqual(expected);
  });

  it("records sequence frames as the app's requests in telemetry (source api), as the agent wires it", async () => {
    await serving();
    const buffer = openTelemetryBuffer({
      path: path.join(models.root, "telemetry.db"),
      durability: "full",
      caps: { maxRows: 1000, maxBytes: 1 << 20 },
      log: testLog,
    });
    const sources: string[] = [];
    const recorder = createInferenceRecorder({
      buffer,
      drift: { observe: () => undefined, snapshot: () => [], gauges: () => [] },
      onInference: (_r, source) => sources.push(source),
      captureRate: 0,
      random: Math.random,
    });
    const off = runtime.observe((r) => recorder.listener(r));
    try {
      const recorded = createSequenceStore({
        runtime: recordedAsApi(runtime, recorder.tapFrames),
        clock,
        log: testLog,
      });
      const wave = speechLikeWave(13, 3);
      for (let n = 0; n < 3; n++) {
        await recorded.step({
          model: "vad",
          id: "telemetry",
          start: n === 0,
          end: n === 2,
          inputs: { input: { type: "float32", dims: [1, 512], data: frameOf(wave, n).slice() } },
        });
      }
      await buffer.durable();
      expect(sources).toEqual(["api", "api", "api"]);
      const rows = buffer.readAfter(0, 100).map((r) => JSON.parse(r.json) as { kind: string; source: string });
      expect(rows.filter((r) => r.kind === "inference").map((r) => r.source)).toEqual(["api", "api", "api"]);
    } finally {
      off();
      buffer.close();
    }
  });

  it("feeds sequence frames to the drift monitor and output summaries, as JSON requests are", async () => {
    const v = await serving();
    // A baseline on the frame's input (one RMS per frame) and on the speech probability.
    const baseline = {
      version: 1,
      features: [
        {
          name: "audio-rms",
          source: "input",
          tensor: "input",
          reduce: "rms",
          edges: [0, 0.1, 0.3, 1],
          counts: [1, 1, 1],
        },
        { name: "speech", source: "output", tensor: "output", edges: [0, 0.5, 1], counts: [1, 1] },
      ],
    };
    await writeFile(path.join(v.installed.dir, "baseline.json"), JSON.stringify(baseline));
    const drift = createDriftMonitor({ log: testLog, now: () => 1, window: 100, minSamples: 3 });
    const buffer = openTelemetryBuffer({
      path: path.join(models.root, "telemetry-drift.db"),
      durability: "full",
      caps: { maxRows: 1000, maxBytes: 1 << 20 },
      log: testLog,
    });
    const recorder = createInferenceRecorder({
      buffer,
      drift,
      onInference: () => undefined,
      captureRate: 0,
      random: Math.random,
    });
    const off = runtime.observe((r) => recorder.listener(r));
    try {
      const recorded = createSequenceStore({
        runtime: recordedAsApi(runtime, recorder.tapFrames),
        clock,
        log: testLog,
      });
      const wave = speechLikeWave(21, 4);
      for (let n = 0; n < 4; n++) {
        await recorded.step({
          model: "vad",
          id: "drift",
          start: n === 0,
          end: n === 3,
          inputs: { input: { type: "float32", dims: [1, 512], data: frameOf(wave, n).slice() } },
        });
      }
      const [report] = drift.snapshot();
      expect(report).toMatchObject({ kind: "drift", model: "vad", version: v.installed.version });
      const features = (report as { features: { name: string; n: number }[] }).features;
      expect(features.map((f) => [f.name, f.n])).toEqual([
        ["audio-rms", 4],
        ["speech", 4],
      ]);
      await buffer.durable();
      const rows = buffer
        .readAfter(0, 100)
        .map((r) => JSON.parse(r.json) as { kind: string; outputs?: Record<string, { mean: number }> });
      const [expected] = await referenceProbabilities([wave]);
      const means = rows.filter((r) => r.kind === "inference").map((r) => r.outputs?.output?.mean);
      expect(means).toEqual(expected!.map((p) => Math.round(p * 1e6) / 1e6));
    } finally {
      off();
      buffer.close();
    }
  });
});
