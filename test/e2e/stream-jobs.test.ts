import { appendFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  FRAME,
  frameOf,
  referenceProbabilities,
  SILERO_SEQUENCE,
  speechLikeWave,
} from "../integration/agent-runtime/sequence-fixtures.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

const ID = "stream-1";
const MODEL = "silero-vad";

const lines = (wave: Float32Array, from: number, to: number) =>
  Array.from(
    { length: to - from },
    (_, i) =>
      `${JSON.stringify({ inputs: { input: { datatype: "FP32", shape: [1, FRAME], data: Array.from(frameOf(wave, from + i)) } } })}\n`,
  ).join("");

type Result = { frame: number; model_version?: string; outputs?: { output: number[] }; code?: string };
const results = async (p: string): Promise<Result[]> =>
  (await readFile(p, "utf8").catch(() => ""))
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Result);
/** Frames the job has recorded as done (its progress file): what a restart resumes from. */
const recorded = async (output: string) =>
  (JSON.parse(await readFile(`${output}.progress.json`, "utf8").catch(() => "{}")) as { frames?: number }).frames ?? 0;

/**
 * Issue 18 §4 through a real agent process: a `streamJobs` entry in the agent config runs Silero VAD
 * over a local NDJSON file appended to while the agent runs; SIGKILL, restart, more frames: every
 * frame is answered exactly once, equal to the in-process reference of the sequence it ran in.
 */
describe("stream job in the agent config survives SIGKILL", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-sj-");
    h = await startHarness(tmp.path);
    const up = await h.api.upload(sileroModelPath());
    await h.api.createModel({
      name: MODEL,
      version: "5.0.0",
      upload: up.sha256,
      samples: sileroSamples(),
      quantize: "none",
      sequence: SILERO_SEQUENCE,
    } as Parameters<Harness["api"]["createModel"]>[0]);
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("follows the file while the agent runs, resumes after SIGKILL: no frame skipped or answered twice", async () => {
    const wave = speechLikeWave(5, 36);
    const input = join(tmp.path, "frames.ndjson");
    const output = join(tmp.path, "vad.ndjson");
    await h.startAgent(ID, "generic-x64", {
      streamJobs: [{ name: "vad-mic", model: MODEL, input: { path: input }, output: { path: output }, pollMs: 20 }],
    });
    // Frames written before the model is served wait for it (they are not answered "not ready").
    await appendFile(input, lines(wave, 0, 8));
    await h.api.createRollout({
      model: MODEL,
      version: "5.0.0",
      target: { deviceIds: [ID] },
      healthPolicy: { probationSeconds: 1 },
    });
    await waitForServing(h.agents.get(ID)!, MODEL, 60_000);
    await appendFile(input, lines(wave, 8, 20));
    await waitFor("20 frames recorded", async () => (await recorded(output)) === 20, 30_000);

    await h.agents.get(ID)!.kill("SIGKILL");
    await appendFile(input, lines(wave, 20, 36)); // the sensor goes on writing while the agent is down
    const agent = await h.restartAgent(ID);
    await waitForServing(agent, MODEL, 60_000);
    await waitFor("36 frames recorded", async () => (await recorded(output)) === 36, 30_000);

    const got = await results(output);
    expect(got.map((r) => r.frame)).toEqual(Array.from({ length: 36 }, (_, i) => i));
    expect(got.filter((r) => r.code !== undefined)).toEqual([]);
    // One sequence before the kill (state carried across appends), a new one from frame 20 on.
    const [before, after] = await referenceProbabilities([wave.subarray(0, 20 * FRAME), wave.subarray(20 * FRAME)]);
    expect(got.slice(0, 20).map((r) => r.outputs!.output[0])).toEqual(before);
    expect(got.slice(20).map((r) => r.outputs!.output[0])).toEqual(after);
  }, 60_000);
});
