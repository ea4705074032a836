import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startStreamJob } from "../../../agent/jobs/stream-job.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createSequenceStore, type SequenceStore } from "../../../agent/runtime/sequence-store.js";
import { systemClock } from "../../../shared/clock.js";
import { type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";
import { FRAME, frameOf, installStateful, referenceProbabilities, speechLikeWave } from "./sequence-fixtures.js";

const lines = (wave: Float32Array, from: number, to: number) =>
  Array.from(
    { length: to - from },
    (_, i) =>
      `${JSON.stringify({ inputs: { input: { datatype: "FP32", shape: [1, FRAME], data: Array.from(frameOf(wave, from + i)) } } })}\n`,
  ).join("");

const results = async (p: string) =>
  (await readFile(p, "utf8"))
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as { frame: number; outputs: { output: number[] } });

/** Issue 18 §4: a stream job over a local file being appended to, resumable after a restart. */
describe("stream job over a local NDJSON file (Silero VAD)", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let store: SequenceStore;

  beforeAll(async () => {
    models = await tempModels();
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    store = createSequenceStore({ runtime, clock: systemClock, log: testLog });
    await runtime.activate(await runtime.load(await installStateful(models, "1.0.0")));
  });
  afterAll(async () => {
    store?.close();
    await runtime?.close();
    await models?.cleanup();
  });

  it("follows the file as it grows, one sequence, and resumes after a restart without doing a frame twice", async () => {
    const wave = speechLikeWave(77, 40);
    const input = path.join(models.root, "frames.ndjson");
    const output = path.join(models.root, "vad.ndjson");
    const def = { name: "vad-mic", model: "vad", input: { path: input }, output: { path: output } };
    await appendFile(input, lines(wave, 0, 20));
    const job = await startStreamJob(def, { sequences: store, clock: systemClock, log: testLog, pollMs: 20 });
    await vi.waitFor(() => expect(job.frames()).toBe(20), { timeout: 20_000 });
    // More frames arrive, half a line first: nothing is run until the line is complete.
    const more = lines(wave, 20, 30);
    await appendFile(input, more.slice(0, 100));
    await appendFile(input, more.slice(100));
    await vi.waitFor(() => expect(job.frames()).toBe(30), { timeout: 20_000 });
    await job.stop();
    // A batch written but not recorded when the agent died: cut off at the start, done again.
    await appendFile(output, `${JSON.stringify({ frame: 30, outputs: { output: [-1] } })}\n`);
    // The agent restarts; frames went on arriving meanwhile.
    await appendFile(input, lines(wave, 30, 40));
    const again = await startStreamJob(def, { sequences: store, clock: systemClock, log: testLog, pollMs: 20 });
    await vi.waitFor(() => expect(again.frames()).toBe(40), { timeout: 20_000 });
    await again.stop();

    const got = await results(output);
    expect(got.map((r) => r.frame)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    // Frames 0–29: one sequence, state carried across the growth of the file.
    const [whole] = await referenceProbabilities([wave.subarray(0, 30 * FRAME)]);
    expect(got.slice(0, 30).map((r) => r.outputs.output[0])).toEqual(whole);
    // After the restart the state starts again (it lived in the model host), from frame 30.
    const [resumed] = await referenceProbabilities([wave.subarray(30 * FRAME)]);
    expect(got.slice(30).map((r) => r.outputs.output[0])).toEqual(resumed);
  });
});
