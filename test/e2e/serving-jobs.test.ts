import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { JobStatus } from "../../agent/jobs/job-scheduler.js";
import { waitFor } from "../helpers/agent-process.js";
import { runDirect } from "../helpers/onnx-direct.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { writeTinyModel } from "../helpers/tiny-models.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, pushTiny, rollout } from "./runtime-support.js";
import { serverGet } from "./telemetry-support.js";

/**
 * Scheduled batch job through a real agent process (issue 8): 10,000 items from a SQLite table, the
 * agent SIGKILLed midway, restarted; the run resumes from its committed outputs and every item ends
 * up with exactly one output, equal to what onnxruntime-node computes directly.
 */
const N = 10_000;
const ID = "jobs-1";
const xOf = (i: number) => [i / 100, -i / 200, (i % 7) - 3, 0.25];

const jobsOf = (c: SocketClient) => c.json<{ jobs: JobStatus[] }>("GET", "/v1/jobs");

describe("scheduled batch job survives SIGKILL", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let inDb: string;
  let outDb: string;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-jobs-");
    h = await startHarness(tmp.path);
    await pushTiny(h, tmp.path, "1.0.0", "linear", 2);
    inDb = join(tmp.path, "items.db");
    outDb = join(tmp.path, "results.db");
    const db = new Database(inDb);
    db.exec("CREATE TABLE items (id TEXT PRIMARY KEY, inputs TEXT NOT NULL)");
    const insert = db.prepare("INSERT INTO items VALUES (?, ?)");
    db.transaction(() => {
      for (let i = 0; i < N; i++) {
        const inputs = { x: { datatype: "FP32", shape: [1, 4], data: xOf(i) } };
        insert.run(`item-${String(i).padStart(5, "0")}`, JSON.stringify(inputs));
      }
    })();
    db.close();
  }, 120_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("10,000 items, SIGKILL midway, restart: resumes and processes each item exactly once", async () => {
    await h.startAgent(ID, "generic-x64", {
      jobs: [
        {
          name: "score",
          schedule: "* * * * * *", // every second: later ticks must find nothing new (incremental)
          model: MODEL,
          input: { kind: "sqlite", path: inDb, table: "items" },
          output: { kind: "sqlite", path: outDb, table: "results" },
          chunkSize: 100,
          concurrency: 8,
          maxItemsPerSecond: 2500, // a few seconds for the whole job, so the kill lands midway
        },
      ],
    });
    await rollout(h, ID, "1.0.0", { probationSeconds: 1 });
    await waitForServing(h.agents.get(ID)!, MODEL, 120_000);

    const count = () => {
      const db = new Database(outDb, { readonly: true, fileMustExist: true });
      try {
        return db.prepare("SELECT COUNT(*) FROM results").pluck().get() as number;
      } catch {
        return 0; // table not created yet
      } finally {
        db.close();
      }
    };
    await waitFor("a fifth of the items committed", async () => count() >= N / 5, 120_000);
    await h.agents.get(ID)!.kill("SIGKILL");
    const committedAtKill = count();
    expect(committedAtKill).toBeLessThan(N);

    const agent = await h.restartAgent(ID);
    const client = await waitForServing(agent, MODEL, 120_000);
    const job = await waitFor(
      "the resumed run completed",
      async () => {
        const j = (await jobsOf(client)).jobs.find((x) => x.name === "score");
        return j?.runs[0]?.state === "completed" && j.lastHere ? j : null;
      },
      120_000,
    );
    const run = job.runs[0]!;
    expect(run).toMatchObject({ total: N, done: N, failed: 0, resumes: 1, model: MODEL });
    expect(job.runs).toHaveLength(1); // later ticks found nothing new: no second run
    // The restarted agent found exactly what was committed before the kill and did only the rest.
    expect(job.lastHere).toMatchObject({ runId: run.runId, resumed: true, version: "1.0.0" });
    expect(job.lastHere!.progress.doneAtStart).toBe(committedAtKill);
    expect(job.lastHere!.progress.processedHere).toBe(N - committedAtKill);

    const db = new Database(outDb, { readonly: true });
    const perItem = db.prepare("SELECT item, COUNT(*) AS n FROM results GROUP BY item").all() as {
      item: string;
      n: number;
    }[];
    expect(perItem).toHaveLength(N);
    expect(perItem.every((r) => r.n === 1)).toBe(true);
    const meta = db.prepare("SELECT DISTINCT run_id, model, version FROM results").all();
    expect(meta).toEqual([{ run_id: run.runId, model: MODEL, version: "1.0.0" }]);

    // Outputs equal direct onnxruntime-node results, on items from before and after the kill.
    const modelPath = await writeTinyModel(tmp.path, "linear", { scale: 2 });
    const one = db.prepare("SELECT outputs FROM results WHERE item = ?").pluck();
    for (const i of [0, 1, 17, 999, 2500, 4321, 7777, 9999]) {
      const got = JSON.parse(one.get(`item-${String(i).padStart(5, "0")}`) as string);
      const want = await runDirect(modelPath, { x: { datatype: "FP32", shape: [1, 4], data: xOf(i) } });
      expect(got.y).toEqual(want.y);
    }
    db.close();

    // Progress reached the fleet server as telemetry (start, resume, every 10 %, completion).
    await client.raw("POST", "/v1/telemetry/flush");
    const records = await waitFor("job telemetry at the server", async () => {
      const res = await serverGet<{ records: { phase: string }[] }>(
        h.server,
        `/v1/devices/${ID}/telemetry?kind=job&limit=1000`,
      );
      const phases = res.records.map((r) => r.phase);
      return phases.includes("completed") ? phases : null;
    });
    expect(records).toContain("started");
    expect(records).toContain("resumed");
  }, 300_000);
});
