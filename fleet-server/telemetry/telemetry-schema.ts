/**
 * Store migration 3 (issue 6): telemetry records de-duplicated by (device, seq), per-device
 * ingest counters, the latest drift window per device and version, and drift alert state/events.
 * Inference fields the health endpoint aggregates are columns; the full record stays in `body`.
 */
export const TELEMETRY_MIGRATION_SQL = `
CREATE TABLE telemetry_records (
  device_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  ts INTEGER NOT NULL,
  model TEXT,
  version TEXT,
  cohort TEXT,
  ok INTEGER,
  latency_ms REAL,
  non_finite INTEGER,
  source TEXT,
  body TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX telemetry_by_version ON telemetry_records(model, version, kind);
CREATE INDEX telemetry_by_received ON telemetry_records(received_at);
CREATE TABLE telemetry_devices (
  device_id TEXT PRIMARY KEY,
  high_seq INTEGER NOT NULL DEFAULT 0,
  stored INTEGER NOT NULL DEFAULT 0,
  duplicates INTEGER NOT NULL DEFAULT 0,
  batches INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  last_rejection TEXT,
  device_dropped INTEGER NOT NULL DEFAULT 0,
  last_batch_at INTEGER
);
CREATE TABLE telemetry_drift_latest (
  device_id TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  cohort TEXT NOT NULL,
  seq INTEGER NOT NULL,
  features TEXT NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY (device_id, model, version)
);
CREATE TABLE telemetry_alert_state (
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  cohort TEXT NOT NULL,
  feature TEXT NOT NULL,
  drift TEXT NOT NULL,
  alerting INTEGER NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (model, version, cohort, feature)
);
CREATE TABLE telemetry_alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  type TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  cohort TEXT NOT NULL,
  feature TEXT NOT NULL,
  drift TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL NOT NULL,
  threshold REAL NOT NULL,
  devices INTEGER NOT NULL,
  samples INTEGER NOT NULL
);
`;
