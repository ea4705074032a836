/**
 * SQL of the store's own later migrations, in a module that imports nothing (issue 23): the
 * repositories used to export these, so `db.ts` → `migrations.ts` → a repo → `db.ts` was an
 * import circle. `migrations.ts` lists them in order; the repositories only query.
 */

/**
 * Migration 5 (issue 5, variants per device): which bundle each rollout member got (its variant
 * may differ from the rollout's default bundle, `rollouts.bundle_sha256`, which stays the fp32 or
 * explicitly requested one), and what each device measured per model and variant during its
 * probations, for the variant choice of the next rollout.
 */
export const VARIANT_MIGRATION_SQL = `
ALTER TABLE rollout_devices ADD COLUMN bundle_sha256 TEXT;
ALTER TABLE rollout_devices ADD COLUMN variant TEXT;
ALTER TABLE rollout_devices ADD COLUMN variant_reason TEXT;
CREATE TABLE variant_measurements (
  device_id TEXT NOT NULL REFERENCES devices(id),
  model TEXT NOT NULL,
  variant TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  p50_ms REAL NOT NULL,
  p95_ms REAL,
  requests INTEGER NOT NULL,
  measured_at TEXT NOT NULL,
  PRIMARY KEY (device_id, model, variant)
);
`;

/**
 * Migration 7: model builds (`POST /v1/models?async=1`) survive a server restart. One row per
 * build; `state` is the whole build document as the tracker keeps it (registry/build-tracker.ts
 * parses it with zod on the way out); `status` and `ended_at` are copied out of it for the
 * start-up sweep and for pruning.
 */
export const BUILD_MIGRATION_SQL = `
CREATE TABLE model_builds (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  ended_at TEXT,
  state TEXT NOT NULL
);
CREATE INDEX model_builds_by_status ON model_builds(status, ended_at);
`;

/**
 * Migration 8: release signatures uploaded so far (k-of-n custody: each holder may upload alone).
 * Only signatures that verified over the pending manifest by a release key are kept; they are
 * checked again under the current root whenever they are counted.
 */
export const PENDING_SIGNATURES_MIGRATION_SQL = `
ALTER TABLE pending_releases ADD COLUMN signatures TEXT NOT NULL DEFAULT '[]';
`;

/**
 * Migration 11 (issue 22, cost per prediction): bundle bytes the server sent, per bundle, device
 * and channel (`http` Range downloads, `mqtt` chunks; `device_id` '' for operators' downloads).
 * Counted as sent, so resumes and retries are included: what the transfer actually cost.
 */
/**
 * Migration 14 (issue 14, replicas): which replica runs each build, so a replica starting up (or the
 * periodic sweep) interrupts only builds whose replica is gone, not those another live one runs.
 */
export const BUILD_OWNER_MIGRATION_SQL = "ALTER TABLE model_builds ADD COLUMN owner TEXT;";

export const BUNDLE_DELIVERIES_MIGRATION_SQL = `
CREATE TABLE bundle_deliveries (
  sha256 TEXT NOT NULL,
  device_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (sha256, device_id, channel)
);
`;
