import cron from "node-cron";
import { z } from "zod";
import { ModelNameSchema, SemverSchema } from "../../shared/schemas/common.js";

/** SQL identifiers are interpolated into statements, so only plain names are accepted. */
const SqlName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, "must be a plain SQL identifier");

/** A directory of `*.json` files, each `{ "inputs": { name: JsonTensor } }`; the item id is the file name without `.json`. */
const DirInputSchema = z.object({ kind: z.literal("dir"), path: z.string().min(1) }).strict();

/** A SQLite table: one row per item, `idColumn` (text or integer) and `inputsColumn` (JSON `{ name: JsonTensor }`). */
const SqliteInputSchema = z
  .object({
    kind: z.literal("sqlite"),
    path: z.string().min(1),
    table: SqlName,
    idColumn: SqlName.default("id"),
    inputsColumn: SqlName.default("inputs"),
  })
  .strict();

/** `{path}/{job}/{runId}/{item}.json`, written to a temporary name and renamed (the rename is the "done" record). */
const DirOutputSchema = z.object({ kind: z.literal("dir"), path: z.string().min(1) }).strict();

/**
 * A SQLite table the agent creates, keyed by (job, run_id, item): the row is both the output and the
 * record that the item is done, written in one transaction per chunk.
 */
const SqliteOutputSchema = z.object({ kind: z.literal("sqlite"), path: z.string().min(1), table: SqlName }).strict();

/**
 * One scheduled batch job (issue 8, the batch deployment pattern at the edge), from the agent config's
 * `jobs` array. Each cron tick starts a run over the input's items; a run interrupted by a restart is
 * resumed when the agent starts, skipping items whose output is already committed.
 */
export const JobDefinitionSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and dashes"),
    /** node-cron expression (5 fields, or 6 with seconds first). */
    schedule: z.string().refine((s) => cron.validate(s), "not a valid cron expression"),
    timezone: z.string().min(1).optional(),
    model: ModelNameSchema,
    /** Pinned version; the model's serving version when absent. */
    version: SemverSchema.optional(),
    input: z.discriminatedUnion("kind", [DirInputSchema, SqliteInputSchema]),
    output: z.discriminatedUnion("kind", [DirOutputSchema, SqliteOutputSchema]),
    /**
     * `incremental` (default): an item with an output from any earlier run of this job is not run again,
     * so each tick processes what is new. `full`: every run processes every item.
     */
    mode: z.enum(["incremental", "full"]).default("incremental"),
    /** Items per committed chunk (one transaction for SQLite output). */
    chunkSize: z.number().int().min(1).max(4096).default(128),
    /** Inferences in flight at once for this job. */
    concurrency: z.number().int().min(1).max(64).default(4),
    /** Caps the job's rate so a background job leaves room for interactive requests. */
    maxItemsPerSecond: z.number().positive().optional(),
    /** How long a run waits for its model to be served (e.g. just after a restart) before it fails. */
    modelWaitSeconds: z.number().int().min(0).max(86_400).default(300),
    enabled: z.boolean().default(true),
  })
  .strict();
export type JobDefinition = z.infer<typeof JobDefinitionSchema>;
export type JobDefinitionInput = z.input<typeof JobDefinitionSchema>;

export const JobsConfigSchema = z
  .array(JobDefinitionSchema)
  .max(32)
  .default([])
  .refine((jobs) => new Set(jobs.map((j) => j.name)).size === jobs.length, "job names must be unique");
