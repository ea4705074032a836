import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { z } from "zod";
import { EdgeFleetError, type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import { type JsonTensor, JsonTensorSchema } from "../../shared/schemas/tensor.js";
import type { JobDefinition } from "./job-config.js";
import { itemFileName, itemFromFileName, sortItems } from "./job-plan.js";

/** Input sources and output sinks of batch jobs (the I/O the planner stays out of). */

const InputsSchema = z.record(z.string().min(1), JsonTensorSchema);
const ItemFileSchema = z.object({ inputs: InputsSchema }).strict();

export type ItemInputs = { id: string; inputs: Record<string, JsonTensor> } | { id: string; error: ErrorJson };

export interface JobInput {
  /** Every item id, sorted. */
  list(): Promise<string[]>;
  /** Inputs of these items; an unreadable or malformed item comes back as an error, not a throw. */
  read(ids: readonly string[]): Promise<ItemInputs[]>;
  close(): void;
}

export interface OutputRecord {
  item: string;
  model: string;
  version: string;
  outputs: Record<string, JsonTensor> | null;
  error: ErrorJson | null;
}

export interface JobOutput {
  /** Items with a committed output: of `runId`, or of any run of the job when `runId` is null. */
  doneItems(job: string, runId: string | null): Promise<Set<string>>;
  /** Writes a chunk's outputs; they become "done" atomically (one transaction, or one rename each). */
  commit(job: string, runId: string, records: readonly OutputRecord[], at: number): Promise<void>;
  close(): void;
}

const malformed = (id: string, err: unknown): ItemInputs => ({
  id,
  error: new EdgeFleetError("VALIDATION_FAILED", `item ${id}: ${toEdgeFleetError(err).message}`).toJSON(),
});

function dirInput(path: string): JobInput {
  return {
    async list() {
      const names = await readdir(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") throw new EdgeFleetError("NOT_FOUND", `job input directory ${path} does not exist`);
        throw err;
      });
      return sortItems(names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -".json".length)));
    },
    read(ids) {
      return Promise.all(
        ids.map(async (id): Promise<ItemInputs> => {
          try {
            const parsed = ItemFileSchema.parse(JSON.parse(await readFile(join(path, `${id}.json`), "utf8")));
            return { id, inputs: parsed.inputs };
          } catch (err) {
            return malformed(id, err);
          }
        }),
      );
    },
    close() {},
  };
}

function sqliteInput(cfg: Extract<JobDefinition["input"], { kind: "sqlite" }>): JobInput {
  const db = new Database(cfg.path, { readonly: true, fileMustExist: true });
  db.pragma("busy_timeout = 5000");
  const listIds = db.prepare(`SELECT CAST(${cfg.idColumn} AS TEXT) AS id FROM ${cfg.table}`).pluck();
  const one = db.prepare(
    `SELECT ${cfg.inputsColumn} AS inputs FROM ${cfg.table} WHERE CAST(${cfg.idColumn} AS TEXT) = ?`,
  );
  return {
    async list() {
      return sortItems(listIds.all() as string[]);
    },
    async read(ids) {
      return ids.map((id): ItemInputs => {
        try {
          const row = one.get(id) as { inputs: string } | undefined;
          if (!row) throw new Error("row no longer exists");
          return { id, inputs: InputsSchema.parse(JSON.parse(row.inputs)) };
        } catch (err) {
          return malformed(id, err);
        }
      });
    },
    close: () => db.close(),
  };
}

export function openJobInput(input: JobDefinition["input"]): JobInput {
  return input.kind === "dir" ? dirInput(input.path) : sqliteInput(input);
}

function dirOutput(path: string): JobOutput {
  const runDir = (job: string, runId: string) => join(path, job, runId);
  const listRun = async (dir: string): Promise<string[]> => {
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    return names.map(itemFromFileName).filter((x): x is string => x !== null);
  };
  return {
    async doneItems(job, runId) {
      const runs = runId ? [runId] : await readdir(join(path, job)).catch(() => [] as string[]);
      const done = new Set<string>();
      for (const r of runs) for (const item of await listRun(runDir(job, r))) done.add(item);
      return done;
    },
    async commit(job, runId, records, at) {
      const dir = runDir(job, runId);
      await mkdir(dir, { recursive: true });
      await Promise.all(
        records.map(async (r) => {
          const file = join(dir, itemFileName(r.item));
          // Temporary names do not end in .json, so a half-written file is never counted as done.
          const tmp = `${file}.${process.pid}.tmp`;
          await writeFile(tmp, JSON.stringify({ job, runId, createdAt: at, ...r }));
          await rename(tmp, file);
        }),
      );
    },
    close() {},
  };
}

function sqliteOutput(cfg: Extract<JobDefinition["output"], { kind: "sqlite" }>): JobOutput {
  const db = new Database(cfg.path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.exec(`CREATE TABLE IF NOT EXISTS ${cfg.table} (
    job TEXT NOT NULL, run_id TEXT NOT NULL, item TEXT NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, outputs TEXT, error TEXT, created_at INTEGER NOT NULL,
    PRIMARY KEY (job, run_id, item)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ${cfg.table}_by_item ON ${cfg.table}(job, item);`);
  const ofRun = db.prepare(`SELECT item FROM ${cfg.table} WHERE job = ? AND run_id = ?`).pluck();
  const ofJob = db.prepare(`SELECT DISTINCT item FROM ${cfg.table} WHERE job = ?`).pluck();
  // A plain INSERT: were an item ever written twice for a run, the chunk would fail loudly rather than hide it.
  const insert = db.prepare(
    `INSERT INTO ${cfg.table} (job, run_id, item, model, version, outputs, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const commitTx = db.transaction((job: string, runId: string, records: readonly OutputRecord[], at: number) => {
    for (const r of records) {
      insert.run(
        job,
        runId,
        r.item,
        r.model,
        r.version,
        r.outputs ? JSON.stringify(r.outputs) : null,
        r.error ? JSON.stringify(r.error) : null,
        at,
      );
    }
  });
  return {
    async doneItems(job, runId) {
      return new Set((runId ? ofRun.all(job, runId) : ofJob.all(job)) as string[]);
    },
    async commit(job, runId, records, at) {
      commitTx(job, runId, records, at);
    },
    close: () => db.close(),
  };
}

export function openJobOutput(output: JobDefinition["output"]): JobOutput {
  return output.kind === "dir" ? dirOutput(output.path) : sqliteOutput(output);
}
