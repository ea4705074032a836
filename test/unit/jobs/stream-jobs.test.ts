import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it, vi } from "vitest";
import { StreamJobsConfigSchema, startStreamJobs } from "../../../agent/jobs/stream-jobs.js";
import type { SequenceStore } from "../../../agent/runtime/sequence-store.js";
import { systemClock } from "../../../shared/clock.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

const job = { name: "vad-mic", model: "vad", input: { path: "/in.ndjson" }, output: { path: "/out.ndjson" } };

describe("streamJobs config", () => {
  it("fills defaults and refuses unknown keys, bad names, duplicates and a shared output", () => {
    expect(StreamJobsConfigSchema.parse(undefined)).toEqual([]);
    expect(StreamJobsConfigSchema.parse([job])[0]).toEqual({ ...job, pollMs: 200, enabled: true });
    const problems = (v: unknown) => {
      const r = StreamJobsConfigSchema.safeParse(v);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };
    expect(problems([{ ...job, topic: "x" }]).join()).toContain("topic");
    expect(problems([{ ...job, name: "Vad Mic" }]).join()).toContain("lowercase letters, digits and dashes");
    expect(problems([{ ...job, input: {} }]).join()).toContain("input.path");
    expect(problems([job, job]).join()).toContain("stream job names must be unique");
    expect(problems([job, { ...job, name: "other" }]).join()).toContain("must not share an output path");
  });
});

describe("stream job supervision", () => {
  it("restarts a job that fails at its start with a backoff, runs it once the fault is gone, stops it on close", async () => {
    const tmp = await makeTempDir("ef-sjs-");
    try {
      // The output path is a directory: the job's start (cutting the output back) fails until it is removed.
      const output = join(tmp.path, "out.ndjson");
      await mkdir(output);
      const ended: string[] = [];
      const sequences = { end: async (_m: string, id: string) => void ended.push(id) } as unknown as SequenceStore;
      const def = { ...job, input: { path: join(tmp.path, "in") }, output: { path: output } };
      const jobs = startStreamJobs({
        jobs: StreamJobsConfigSchema.parse([
          def,
          { ...def, name: "off", output: { path: join(tmp.path, "x") }, enabled: false },
        ]),
        sequences,
        isServed: () => true,
        clock: systemClock,
        log: pino({ level: "silent" }),
        backoff: { baseMs: 5, capMs: 20 },
      });
      await vi.waitFor(() => expect(jobs.status()[0]!.restarts).toBeGreaterThanOrEqual(2), { timeout: 5000 });
      expect(jobs.status()).toHaveLength(1); // the disabled job is not run
      expect(jobs.status()[0]!.running).toBe(false);
      await rm(output, { recursive: true });
      await vi.waitFor(() => expect(jobs.status()[0]).toMatchObject({ running: true, frames: 0 }), { timeout: 5000 });
      await jobs.close();
      expect(jobs.status()[0]!.running).toBe(false);
      expect(ended).toEqual(["job:vad-mic"]);
    } finally {
      await tmp.cleanup();
    }
  });

  it("does not start a job before its model is served", async () => {
    let served = false;
    const jobs = startStreamJobs({
      jobs: StreamJobsConfigSchema.parse([{ ...job, pollMs: 10 }]),
      sequences: { end: async () => undefined } as unknown as SequenceStore,
      isServed: () => served,
      clock: systemClock,
      log: pino({ level: "silent" }),
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(jobs.status()[0]!.running).toBe(false);
    served = true;
    await vi.waitFor(() => expect(jobs.status()[0]!.running).toBe(true), { timeout: 5000 });
    await jobs.close();
    expect(jobs.status()[0]!.running).toBe(false);
  });
});
