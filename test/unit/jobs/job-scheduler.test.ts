import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type JobDefinitionInput, JobDefinitionSchema } from "../../../agent/jobs/job-config.js";
import type { JobReport } from "../../../agent/jobs/job-runner.js";
import { createJobScheduler, type JobScheduler } from "../../../agent/jobs/job-scheduler.js";
import type { InferRequest } from "../../../agent/runtime/model-runtime.js";
import { systemClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { testLog } from "../../integration/agent-runtime/fixtures.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "ef-jobs-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const N = 500;
async function writeItems(dir: string, n: number, from = 0) {
  await mkdir(dir, { recursive: true });
  for (let i = from; i < from + n; i++) {
    const inputs = { x: { datatype: "FP32", shape: [1, 1], data: [i] } };
    await writeFile(path.join(dir, `item-${String(i).padStart(5, "0")}.json`), JSON.stringify({ inputs }));
  }
}

/** A fake runtime: y = 2x, version 1.0.0; `hook` runs before each call. */
function fakeInfer(hook: (n: number) => void = () => undefined) {
  let calls = 0;
  const infer = async (req: InferRequest) => {
    hook(++calls);
    await new Promise((r) => setImmediate(r));
    const x = req.inputs.x!;
    if (x.data.length !== 1) throw new EdgeFleetError("INVALID_TENSOR", "bad shape");
    return { model: req.model, version: "1.0.0", outputs: { y: { ...x, data: [Number(x.data[0]) * 2] } } };
  };
  return { infer, calls: () => calls };
}

function scheduler(
  def: JobDefinitionInput,
  infer: (r: InferRequest) => Promise<never> | Promise<unknown>,
  reports: JobReport[],
) {
  return createJobScheduler({
    log: testLog,
    clock: systemClock,
    dataDir: root,
    jobs: [JobDefinitionSchema.parse(def)],
    infer: infer as Parameters<typeof createJobScheduler>[0]["infer"],
    report: (r) => reports.push(r),
  });
}

const settled = (s: JobScheduler) =>
  vi.waitFor(
    () => {
      const j = s.list()[0]!;
      if (j.busy || j.runs[0]?.state === "running") throw new Error("still running");
      return j;
    },
    { timeout: 20_000, interval: 20 },
  );

const base = (output: JobDefinitionInput["output"]): JobDefinitionInput => ({
  name: "double",
  schedule: "0 0 1 1 *",
  model: "tiny",
  input: { kind: "dir", path: path.join(root, "in") },
  output,
  chunkSize: 32,
});

describe("job scheduler", () => {
  it("a run stopped midway resumes in a new scheduler without redoing committed items (SQLite output)", async () => {
    await writeItems(path.join(root, "in"), N);
    const out = path.join(root, "out.db");
    const reports: JobReport[] = [];
    let first: JobScheduler | null = null;
    let closing: Promise<void> | null = null;
    const f1 = fakeInfer((n) => {
      if (n === 200) closing = first!.close();
    });
    first = scheduler(base({ kind: "sqlite", path: out, table: "results" }), f1.infer, reports);
    first.start();
    const { runId } = await first.trigger("double");
    expect(runId).not.toBeNull();
    await vi.waitFor(() => expect(closing).not.toBeNull());
    await closing;

    const db = new Database(out, { readonly: true });
    const count = () => db.prepare("SELECT COUNT(*) FROM results").pluck().get() as number;
    const committed = count();
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThan(N);

    const f2 = fakeInfer();
    const second = scheduler(base({ kind: "sqlite", path: out, table: "results" }), f2.infer, reports);
    second.start(); // resumes the unfinished run
    const job = await settled(second);
    expect(job.runs[0]).toMatchObject({ runId, state: "completed", total: N, done: N, resumes: 1 });
    expect(f2.calls()).toBe(N - committed);
    expect(count()).toBe(N);
    const dup = db.prepare("SELECT COUNT(*) FROM (SELECT item FROM results GROUP BY item HAVING COUNT(*) > 1)");
    expect(dup.pluck().get()).toBe(0);
    const row = db.prepare("SELECT * FROM results WHERE item = 'item-00007'").get() as Record<string, string>;
    expect(row).toMatchObject({ model: "tiny", version: "1.0.0", run_id: runId });
    expect(JSON.parse(row.outputs!).y.data).toEqual([14]);
    db.close();
    expect(reports.map((r) => r.phase)).toContain("resumed");
    expect(reports.at(-1)).toMatchObject({ phase: "completed", done: N, total: N, version: "1.0.0" });

    // Incremental: the next tick has nothing new; two new items make a run of two.
    expect((await second.trigger("double")).runId).toBeNull();
    await writeItems(path.join(root, "in"), 2, N);
    expect((await second.trigger("double")).runId).not.toBeNull();
    expect((await settled(second)).runs[0]).toMatchObject({ state: "completed", total: 2 });
    await second.close();
  });

  it("directory output, item errors committed with the error, full mode reprocesses", async () => {
    await writeItems(path.join(root, "in"), 40);
    await writeFile(path.join(root, "in", "broken.json"), "{ not json");
    await writeFile(
      path.join(root, "in", "wide.json"),
      JSON.stringify({ inputs: { x: { datatype: "FP32", shape: [1, 2], data: [1, 2] } } }),
    );
    const reports: JobReport[] = [];
    const f = fakeInfer();
    const s = scheduler({ ...base({ kind: "dir", path: path.join(root, "out") }), mode: "full" }, f.infer, reports);
    s.start();
    const { runId } = await s.trigger("double");
    const job = await settled(s);
    expect(job.runs[0]).toMatchObject({ state: "completed", total: 42, done: 42, failed: 2 });
    const files = await readdir(path.join(root, "out", "double", runId!));
    expect(files).toHaveLength(42);
    const broken = JSON.parse(await readFile(path.join(root, "out", "double", runId!, "broken.json"), "utf8"));
    expect(broken.error.code).toBe("VALIDATION_FAILED");
    const wide = JSON.parse(await readFile(path.join(root, "out", "double", runId!, "wide.json"), "utf8"));
    expect(wide.error.code).toBe("INVALID_TENSOR");
    const again = await s.trigger("double");
    expect(again.runId).not.toBe(runId);
    expect((await settled(s)).runs[0]).toMatchObject({ runId: again.runId, total: 42 });
    expect(f.calls()).toBe(2 * 41); // `broken` never reaches the runtime
    await s.close();
  });

  it("waits for the model, then fails the run after modelWaitSeconds", async () => {
    await writeItems(path.join(root, "in"), 3);
    const reports: JobReport[] = [];
    const infer = async (): Promise<never> => {
      throw new EdgeFleetError("MODEL_NOT_READY", "no serving version");
    };
    const s = scheduler(
      { ...base({ kind: "dir", path: path.join(root, "out") }), modelWaitSeconds: 0 },
      infer,
      reports,
    );
    s.start();
    await s.trigger("double");
    const job = await settled(s);
    expect(job.runs[0]).toMatchObject({ state: "failed", done: 0 });
    expect(job.runs[0]!.error?.code).toBe("MODEL_NOT_READY");
    expect(reports.at(-1)).toMatchObject({ phase: "failed" });
    await s.close();
  });
});
