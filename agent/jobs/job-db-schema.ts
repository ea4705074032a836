import { z } from "zod";
import { StoredErrorSchema } from "../store/agent-db-schema.js";
import { jsonColumn, type Migration, QUARANTINE_TABLE_SQL } from "../store/schema-migrations.js";

/** `{dataDir}/jobs.db`: its migrations and the shape of its rows (issue 23). */
export const JOB_DB_MIGRATIONS: readonly Migration[] = [
  {
    // The schema from before versioning (user_version 0), unchanged.
    version: 1,
    sql: `CREATE TABLE IF NOT EXISTS job_runs (
    job TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL, model TEXT NOT NULL, version TEXT,
    total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    resumes INTEGER NOT NULL DEFAULT 0, started_at INTEGER NOT NULL, finished_at INTEGER, error TEXT,
    PRIMARY KEY (job, run_id))`,
  },
  // Rows that do not decode are moved here at open (schema-migrations.ts quarantineInvalidRows).
  { version: 2, sql: QUARANTINE_TABLE_SQL },
];

export const RUN_STATES = ["running", "completed", "failed"] as const;

export const JobRunRowSchema = z.object({
  job: z.string(),
  run_id: z.string(),
  state: z.enum(RUN_STATES),
  model: z.string(),
  version: z.string().nullable(),
  total: z.number().int().min(0),
  done: z.number().int().min(0),
  failed: z.number().int().min(0),
  resumes: z.number().int().min(0),
  started_at: z.number(),
  finished_at: z.number().nullable(),
  error: jsonColumn(StoredErrorSchema).nullable(),
});
