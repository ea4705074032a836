import { pino } from "pino";
import type { ErrorJson } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { openFallbackDb } from "../store/fallback-db.js";
import { decodeRow, migrateSchema, quarantineInvalidRows } from "../store/schema-migrations.js";
import { JOB_DB_MIGRATIONS, JobRunRowSchema, type RUN_STATES } from "./job-db-schema.js";

/** Runs of batch jobs in `{dataDir}/jobs.db`: what is running (to resume after a restart) and history. */

export type RunState = (typeof RUN_STATES)[number];

export interface JobRun {
  job: string;
  runId: string;
  state: RunState;
  model: string;
  version: string | null;
  total: number;
  done: number;
  failed: number;
  /** Times the run was picked up again after the agent restarted. */
  resumes: number;
  startedAt: number;
  finishedAt: number | null;
  error: ErrorJson | null;
}

export interface JobStateStore {
  begin(run: Pick<JobRun, "job" | "runId" | "model" | "version" | "startedAt">): void;
  /** The run of `job` left `running` by a previous process, if any. */
  unfinished(job: string): JobRun | null;
  markResumed(job: string, runId: string): void;
  progress(job: string, runId: string, p: Pick<JobRun, "total" | "done" | "failed">): void;
  finish(job: string, runId: string, state: Exclude<RunState, "running">, at: number, error?: ErrorJson): void;
  recent(job: string, limit: number): JobRun[];
  /** Runs started so far (for unique run ids). */
  count(): number;
  close(): void;
}

/** A `job_runs` row decoded at the boundary (issue 23): a corrupt one is a clear STORAGE_FAILED. */
function fromRow(row: unknown, path: string): JobRun {
  const o = row as { job?: unknown; run_id?: unknown };
  const key = `${String(o.job)}/${String(o.run_id)}`;
  const r = decodeRow(JobRunRowSchema, row, { db: "jobs.db", path, table: "job_runs", key });
  return {
    job: r.job,
    runId: r.run_id,
    state: r.state,
    model: r.model,
    version: r.version,
    total: r.total,
    done: r.done,
    failed: r.failed,
    resumes: r.resumes,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    error: r.error,
  };
}

export function openJobState(path: string, log: Logger = pino({ level: "silent" })): JobStateStore {
  // A full, read-only or failing disk (issue 20 §2) moves the store to an in-memory copy instead of
  // stopping the agent (at open) or escaping from a job run's bookkeeping (later): fallback-db.ts.
  const h = openFallbackDb({
    path,
    log,
    init(d, onDisk) {
      if (onDisk) {
        d.pragma("journal_mode = WAL");
        d.pragma("busy_timeout = 5000");
      }
      migrateSchema(d, { name: "jobs.db", path, migrations: JOB_DB_MIGRATIONS });
      const keyOf = (r: Record<string, unknown>) => `${String(r.job)}/${String(r.run_id)}`;
      const at = () => new Date().toISOString();
      const where = { db: "jobs.db", path, table: "job_runs", schema: JobRunRowSchema, keyOf };
      for (const err of quarantineInvalidRows(d, where, at)) {
        log.error({ err: err.toJSON() }, "corrupt job run moved to quarantined_rows");
      }
    },
  });
  const q = (sql: string) => h.prepare(sql);
  const begin =
    "INSERT INTO job_runs (job, run_id, state, model, version, started_at) VALUES (?, ?, 'running', ?, ?, ?)";
  const unfinished =
    "SELECT * FROM job_runs WHERE job = ? AND state = 'running' ORDER BY started_at DESC, run_id DESC LIMIT 1";
  const resumed = "UPDATE job_runs SET resumes = resumes + 1 WHERE job = ? AND run_id = ?";
  const progress = "UPDATE job_runs SET total = ?, done = ?, failed = ? WHERE job = ? AND run_id = ?";
  const finish = "UPDATE job_runs SET state = ?, finished_at = ?, error = ? WHERE job = ? AND run_id = ?";
  const recent = "SELECT * FROM job_runs WHERE job = ? ORDER BY started_at DESC, run_id DESC LIMIT ?";
  return {
    begin: (r) => void h.run(() => q(begin).run(r.job, r.runId, r.model, r.version, r.startedAt)),
    unfinished(job) {
      const row = h.run(() => q(unfinished).get(job));
      return row ? fromRow(row, path) : null;
    },
    markResumed: (job, runId) => void h.run(() => q(resumed).run(job, runId)),
    progress: (job, runId, p) => void h.run(() => q(progress).run(p.total, p.done, p.failed, job, runId)),
    finish: (job, runId, state, at, error) =>
      void h.run(() => q(finish).run(state, at, error ? JSON.stringify(error) : null, job, runId)),
    recent: (job, limit) => h.run(() => q(recent).all(job, limit)).map((row) => fromRow(row, path)),
    count: () => h.run(() => q("SELECT COUNT(*) FROM job_runs").pluck().get()) as number,
    close: () => h.close(),
  };
}
