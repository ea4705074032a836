/**
 * The agent's SQLite schemas as they were before versioned migrations (issue 23): copied verbatim
 * from agent/store/agent-store.ts, agent/telemetry/telemetry-buffer.ts and agent/jobs/job-state.ts
 * at the commit before, with the pragmas those stores set. A file made from these is what a device
 * upgraded from that agent has on disk (user_version 0). Never change these: they are history.
 */
export const LEGACY_AGENT_DB = `
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS desired (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
  model TEXT PRIMARY KEY, state TEXT NOT NULL, committed TEXT, candidate TEXT, error TEXT,
  rollout_id TEXT, probation_restarts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS release_counters (model TEXT PRIMARY KEY, highest INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bad_bundles (sha256 TEXT PRIMARY KEY, model TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS downloads (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, contiguous INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;
export const LEGACY_AGENT_DB_PRAGMAS = ["journal_mode = WAL", "synchronous = FULL"];

export const LEGACY_TELEMETRY_DB = `
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, cost INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;
export const LEGACY_TELEMETRY_DB_PRAGMAS = ["auto_vacuum = INCREMENTAL", "journal_mode = WAL", "synchronous = FULL"];

export const LEGACY_JOBS_DB = `CREATE TABLE IF NOT EXISTS job_runs (
    job TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL, model TEXT NOT NULL, version TEXT,
    total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    resumes INTEGER NOT NULL DEFAULT 0, started_at INTEGER NOT NULL, finished_at INTEGER, error TEXT,
    PRIMARY KEY (job, run_id))`;
export const LEGACY_JOBS_DB_PRAGMAS = ["journal_mode = WAL"];
