/**
 * Store migration 4 (issue 7). Kept beside the code that uses it so the security tables are
 * reviewed together; `store/migrations.ts` only references it.
 *
 * - `api_tokens`: operator bearer tokens. Only a SHA-256 of the token is stored: tokens are 256
 *   random bits, so a fast hash is enough (no dictionary to attack), unlike passwords.
 * - `audit_log`: append-only. Triggers refuse UPDATE and DELETE, so even a bug in our own code
 *   cannot rewrite history through this connection.
 * - `enrollment_tokens`: one-time tokens a device exchanges for its credentials.
 * - `device_revocations`: revoked device ids; checked at every broker CONNECT and HTTP request.
 * - `broker_credentials`: the Mosquitto `$7$` (PBKDF2-SHA512) hash of each device password, made
 *   at enrollment while the plaintext is in hand, so `broker-config --mosquitto` never needs it.
 */
export const SECURITY_MIGRATION_SQL = `
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  token_sha256 TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at TEXT
);
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  role TEXT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  error_code TEXT,
  remote TEXT
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL UNIQUE,
  device_id TEXT,
  tags TEXT NOT NULL DEFAULT '{}',
  profile TEXT,
  expires_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  used_at TEXT,
  used_by TEXT
);
CREATE TABLE device_revocations (
  device_id TEXT PRIMARY KEY,
  revoked_at TEXT NOT NULL,
  reason TEXT
);
CREATE TABLE broker_credentials (
  device_id TEXT PRIMARY KEY,
  mosquitto_hash TEXT NOT NULL
);
`;

/**
 * Store migration 9 (issue 20 §1): the audit log records the route the router matched (its
 * pattern, e.g. `/v1/tokens`; NULL when no route matched) beside `path`, the path exactly as the
 * client sent it (still percent-encoded), so `/v1/%74okens` is visible as what it was.
 */
export const AUDIT_ROUTE_MIGRATION_SQL = `
ALTER TABLE audit_log ADD COLUMN route TEXT;
`;
