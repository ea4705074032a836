import { AUDIT_ROUTE_MIGRATION_SQL, SECURITY_MIGRATION_SQL } from "../auth/security-schema.js";
import { LEASES_MIGRATION_SQL } from "../cluster/lease-repo.js";
import { TELEMETRY_MIGRATION_SQL } from "../telemetry/telemetry-schema.js";
import { GOVERNANCE_MIGRATION_SQL } from "./governance-repo.js";
import {
  BUILD_MIGRATION_SQL,
  BUILD_OWNER_MIGRATION_SQL,
  BUNDLE_DELIVERIES_MIGRATION_SQL,
  PENDING_SIGNATURES_MIGRATION_SQL,
  VARIANT_MIGRATION_SQL,
} from "./migration-sql.js";

/**
 * Numbered, append-only schema migrations. Never edit a released migration: add a new one.
 * JSON columns hold documents that are validated with zod on the way in, so SQLite only stores them.
 */
export const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '{}',
  profile TEXT,
  presence TEXT NOT NULL DEFAULT 'offline',
  reported TEXT,
  last_seen TEXT,
  desired_seq INTEGER NOT NULL DEFAULT 0,
  desired TEXT,
  created_at TEXT NOT NULL
);
CREATE TABLE model_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  lineage TEXT NOT NULL DEFAULT '{}',
  samples_count INTEGER NOT NULL,
  model_sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE bundles (
  sha256 TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  variant TEXT NOT NULL,
  release_counter INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (name, version, variant),
  FOREIGN KEY (name, version) REFERENCES model_versions(name, version)
);
CREATE INDEX bundles_by_model ON bundles(name, release_counter);
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  variant TEXT NOT NULL,
  bundle_sha256 TEXT NOT NULL REFERENCES bundles(sha256),
  target TEXT NOT NULL,
  health_policy TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  device_id TEXT NOT NULL REFERENCES devices(id),
  desired_seq INTEGER NOT NULL,
  assigned_at TEXT NOT NULL,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE TABLE device_events (
  device_id TEXT NOT NULL REFERENCES devices(id),
  event_seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  ts TEXT NOT NULL,
  body TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (device_id, event_seq)
);
`,
  },
  {
    // Issue 4: staged rollouts. The definition and engine state of a rollout, each device's
    // membership (stage, phase clock, sticky outcome, what it ran before), an audit trail of
    // transitions, and re-releases (old bytes under a new release counter, architecture.md §3).
    version: 2,
    sql: `
ALTER TABLE rollouts ADD COLUMN definition TEXT;
ALTER TABLE rollouts ADD COLUMN status TEXT NOT NULL DEFAULT 'legacy';
ALTER TABLE rollouts ADD COLUMN state TEXT;
ALTER TABLE rollout_devices ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollout_devices ADD COLUMN previous TEXT;
ALTER TABLE rollout_devices ADD COLUMN phase TEXT NOT NULL DEFAULT 'download';
ALTER TABLE rollout_devices ADD COLUMN phase_since TEXT;
ALTER TABLE rollout_devices ADD COLUMN outcome TEXT;
ALTER TABLE rollout_devices ADD COLUMN outcome_reason TEXT;
ALTER TABLE rollout_devices ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollout_devices ADD COLUMN rollback_sha256 TEXT;
CREATE INDEX rollouts_by_model_status ON rollouts(model, status);
CREATE TABLE rollout_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  ts TEXT NOT NULL,
  type TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX rollout_events_by_rollout ON rollout_events(rollout_id, seq);
CREATE TABLE re_releases (
  sha256 TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  variant TEXT NOT NULL,
  release_counter INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  origin_sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX re_releases_by_model ON re_releases(name, release_counter);
`,
  },
  // 3: telemetry (issue 6): records de-duplicated by (device, seq), ingest counters, drift state and
  // alerts. See fleet-server/telemetry/telemetry-schema.ts.
  { version: 3, sql: TELEMETRY_MIGRATION_SQL },
  // 4: security (issue 7) — API tokens, append-only audit log, one-time enrollment tokens,
  // device revocations, Mosquitto-format credential hashes. See fleet-server/auth/security-repo.ts.
  { version: 4, sql: SECURITY_MIGRATION_SQL },
  // 5: variants per device (issue 5) — each rollout member's own bundle and variant, and what
  // devices measured per variant. See fleet-server/store/variant-measurement-repo.ts.
  { version: 5, sql: VARIANT_MIGRATION_SQL },
  // 6: offline release signing (issue 7) — releases built without the release key, waiting for
  // an operator's signatures. Their payload files live in `pending/{id}/`. See registry/release-signing.ts.
  {
    version: 6,
    sql: `
CREATE TABLE pending_releases (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  variant TEXT NOT NULL,
  release_counter INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  payload TEXT NOT NULL,
  origin_sha256 TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX pending_releases_by_model ON pending_releases(name, version, variant);
`,
  },
  // 7: model builds survive a restart (registry/build-tracker.ts). See fleet-server/store/build-repo.ts.
  { version: 7, sql: BUILD_MIGRATION_SQL },
  // 8: k-of-n release signatures uploaded one holder at a time: valid signatures are kept on the
  // pending release until a threshold is reached. See fleet-server/store/pending-release-repo.ts.
  { version: 8, sql: PENDING_SIGNATURES_MIGRATION_SQL },
  // 9: the audit log records the matched route beside the raw path (issue 20 §1). See auth/security-schema.ts.
  { version: 9, sql: AUDIT_ROUTE_MIGRATION_SQL },
  // 10: a device's rollouts by device (issue 14): the telemetry cohort lookup runs once per batch and
  // scanned every rollout's members without it (10,000 devices: the ingest's largest cost).
  { version: 10, sql: "CREATE INDEX rollout_devices_by_device ON rollout_devices(device_id);" },
  // 11: model version governance (issue 21): lifecycle stages, approval policies, reviews and stage
  // history (append-only). See fleet-server/store/governance-repo.ts.
  { version: 11, sql: GOVERNANCE_MIGRATION_SQL },
  // 12: bundle bytes sent per bundle, device and channel (issue 22, cost per prediction). See cost/delivery-counter.ts.
  { version: 12, sql: BUNDLE_DELIVERIES_MIGRATION_SQL },
  // 13: leases (issue 14, replicas): which fleet-server replica executes rollouts. See cluster/lease-plan.ts.
  { version: 13, sql: LEASES_MIGRATION_SQL },
  // 14: the replica running each model build (issue 14). See registry/build-tracker.ts.
  { version: 14, sql: BUILD_OWNER_MIGRATION_SQL },
];
