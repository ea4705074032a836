import type { Migration } from "../store/schema-migrations.js";

/**
 * `{dataDir}/telemetry.db`: its migrations (issue 23). Rows are not decoded here: `body` is the
 * record's JSON, spliced into batches as text and validated by the server when it arrives.
 */
export const TELEMETRY_DB_MIGRATIONS: readonly Migration[] = [
  {
    // The schema from before versioning (user_version 0), unchanged.
    version: 1,
    sql: `
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, cost INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`,
  },
];
