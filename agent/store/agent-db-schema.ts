import { z } from "zod";
import { ERROR_CODES } from "../../shared/errors.js";
import { InstalledRefSchema, UpdateStateSchema } from "../../shared/schemas/device-state.js";
import { jsonColumn, type Migration, QUARANTINE_TABLE_SQL } from "./schema-migrations.js";

/**
 * `{dataDir}/agent.db`: its migrations and the shape of its rows (issue 23). Kept apart from
 * agent-store.ts so the store imports its schema, never the other way round.
 */
export const AGENT_DB_MIGRATIONS: readonly Migration[] = [
  {
    // The schema from before versioning (user_version 0), unchanged: such files pass through as they are.
    version: 1,
    sql: `
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS desired (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
  model TEXT PRIMARY KEY, state TEXT NOT NULL, committed TEXT, candidate TEXT, error TEXT,
  rollout_id TEXT, probation_restarts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS release_counters (model TEXT PRIMARY KEY, highest INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bad_bundles (sha256 TEXT PRIMARY KEY, model TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS downloads (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, contiguous INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`,
  },
  // Rows that do not decode are moved here at open (schema-migrations.ts quarantineInvalidRows).
  { version: 2, sql: QUARANTINE_TABLE_SQL },
];

/** An error as the agent stores it (EdgeFleetError.toJSON()). */
export const StoredErrorSchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  details: z.unknown().optional(),
});

/** A `models` row, decoded into a ModelRecord's fields. */
export const ModelRowSchema = z.object({
  model: z.string().min(1),
  state: UpdateStateSchema,
  committed: jsonColumn(InstalledRefSchema).nullable(),
  candidate: jsonColumn(InstalledRefSchema).nullable(),
  error: jsonColumn(StoredErrorSchema).nullable(),
  rollout_id: z.string().nullable(),
  probation_restarts: z.number().int().min(0),
});

/**
 * The accepted desired-state document: stored as the raw signed JSON, verified again by
 * verify-desired.ts whenever it is used, so here only its JSON-ness is checked.
 */
export const DesiredRowSchema = z.object({
  seq: z.number().int().min(0),
  document: jsonColumn(z.unknown()),
});
