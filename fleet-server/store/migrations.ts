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
];
