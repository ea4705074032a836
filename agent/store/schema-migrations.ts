import type Database from "better-sqlite3";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import type { StorageFaultDetails } from "./storage-faults.js";

/**
 * Versioned schema migrations for the agent's SQLite files (issue 23), kept in `PRAGMA user_version`
 * (the file's header, so no table is needed and a copy of the file carries its version with it).
 * Devices upgrade in place: an agent opens what the previous agent wrote and migrates it forward,
 * one transaction per migration (the pragma is transactional, so a failed migration leaves the
 * file at the version before it). Append-only: never edit a released migration, add a new one.
 *
 * Version 1 of every agent database is the `CREATE TABLE IF NOT EXISTS` schema the agent used
 * before versioning, so a file from then (user_version 0, tables present) passes through it unchanged.
 */
export interface Migration {
  version: number;
  sql: string;
}

/** `details.cause` of the error for a file written by a newer agent (see `migrateSchema`). */
export const SCHEMA_NEWER = "SCHEMA_NEWER";
/** `details.cause` of the error for a row that does not decode (see `decodeRow`). */
export const ROW_INVALID = "ROW_INVALID";

export interface SchemaNewerDetails extends StorageFaultDetails {
  cause: typeof SCHEMA_NEWER;
  found: number;
  known: number;
}

/** True for the error `migrateSchema` raises on a file from a newer agent: nothing may write to that file. */
export function isSchemaNewer(err: unknown): err is EdgeFleetError {
  return err instanceof EdgeFleetError && (err.details as { cause?: unknown } | undefined)?.cause === SCHEMA_NEWER;
}

/** The highest version in `migrations`, checking they are numbered 1, 2, 3, ... in order. Pure. */
export function latestVersion(migrations: readonly Migration[]): number {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${i} has version ${m.version}, expected ${i + 1}`);
  });
  return migrations.length;
}

/**
 * Brings `db` to the newest version in `migrations`. A file whose version is above that was written
 * by a newer agent (a downgrade): it is refused with STORAGE_FAILED (details.cause SCHEMA_NEWER)
 * before anything is written, since an older schema's writes could corrupt what the newer one
 * means. The stores handle that like any storage fault (agent/store/fallback-db.ts): the agent
 * keeps serving on an in-memory database and never writes back over the newer file.
 */
export function migrateSchema(db: Database.Database, opts: SchemaOptions): { from: number; to: number } {
  const { from, known } = refuseNewerSchema(db, opts);
  for (const m of opts.migrations) {
    if (m.version <= from) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return { from, to: Math.max(from, known) };
}

export interface SchemaOptions {
  /** The file's name, for messages (`agent.db`). */
  name: string;
  path: string | null;
  migrations: readonly Migration[];
}

/**
 * The check `migrateSchema` starts with, for a store to run before pragmas that write the file's
 * header (auto_vacuum does): a newer file must be left byte for byte as it was.
 */
export function refuseNewerSchema(db: Database.Database, opts: SchemaOptions): { from: number; known: number } {
  const known = latestVersion(opts.migrations);
  const from = db.pragma("user_version", { simple: true }) as number;
  if (from > known) {
    const details: SchemaNewerDetails = { path: opts.path, cause: SCHEMA_NEWER, found: from, known };
    throw new EdgeFleetError(
      "STORAGE_FAILED",
      `${opts.name} has schema version ${from}, newer than this agent knows (${known}): it was written by a newer agent; ` +
        "refusing to use it (left untouched; the agent runs on an in-memory database until it is upgraded or the file is moved away)",
      { details: details },
    );
  }
  return { from, known };
}

/**
 * A JSON text column decoded with `schema`. A parse or validation failure is a zod issue, so
 * `decodeRow` reports it with the column's name instead of a SyntaxError from deep in a caller.
 */
export function jsonColumn<T extends z.ZodType>(schema: T) {
  return z.string().transform((text, ctx): z.infer<T> => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `not JSON: ${(err as Error).message}` });
      return z.NEVER;
    }
    const r = schema.safeParse(value);
    if (!r.success) {
      for (const issue of r.error.issues) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
      return z.NEVER;
    }
    return r.data;
  });
}

/**
 * Decodes one row read from `table` (issue 23: rows are parsed at the persistence boundary, not cast).
 * A row that does not match is local corruption: a clear STORAGE_FAILED naming the file, table, key
 * and fields (details.cause ROW_INVALID), never a TypeError later in whoever used the row.
 */
export function decodeRow<T extends z.ZodType>(
  schema: T,
  row: unknown,
  where: { db: string; path: string | null; table: string; key: string },
): z.infer<T> {
  const r = schema.safeParse(row);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.join(".") || "(row)"}: ${i.message}`);
  throw new EdgeFleetError(
    "STORAGE_FAILED",
    `${where.db}: row ${where.table}[${where.key}] is corrupt: ${issues.join("; ")}`,
    { details: { path: where.path, cause: ROW_INVALID, table: where.table, key: where.key, issues } },
  );
}

/**
 * Where rows that do not decode are moved when a database opens (`quarantineInvalidRows`): kept
 * for a person to look at, out of the way of the agent. A migration of each database that decodes rows.
 */
export const QUARANTINE_TABLE_SQL = `
CREATE TABLE quarantined_rows (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, row_key TEXT NOT NULL, row TEXT NOT NULL,
  reason TEXT NOT NULL, at TEXT NOT NULL);
`;

/**
 * Moves every row of `table` that `schema` rejects into `quarantined_rows`, in one transaction, and
 * returns why each was moved (ROW_INVALID errors). Run at open: a row damaged at rest (a bad sector,
 * a hand edit, an agent bug) then costs what that row said — the agent installs the model again from
 * its desired state — instead of an agent that exits at every start on the same row (issue 23).
 */
export function quarantineInvalidRows<T extends z.ZodType>(
  db: Database.Database,
  opts: { db: string; path: string | null; table: string; schema: T; keyOf: (row: Record<string, unknown>) => string },
  now: () => string,
): EdgeFleetError[] {
  const rows = db.prepare(`SELECT rowid AS _rowid_, * FROM ${opts.table}`).all() as Record<string, unknown>[];
  const moved: EdgeFleetError[] = [];
  const bad: { rowid: unknown; key: string; row: string; err: EdgeFleetError }[] = [];
  for (const { _rowid_, ...row } of rows) {
    const key = opts.keyOf(row);
    try {
      decodeRow(opts.schema, row, { db: opts.db, path: opts.path, table: opts.table, key });
    } catch (err) {
      if (!(err instanceof EdgeFleetError)) throw err;
      bad.push({ rowid: _rowid_, key, row: JSON.stringify(row), err });
    }
  }
  if (bad.length === 0) return moved;
  db.transaction(() => {
    const keep = db.prepare("INSERT INTO quarantined_rows (source, row_key, row, reason, at) VALUES (?, ?, ?, ?, ?)");
    const drop = db.prepare(`DELETE FROM ${opts.table} WHERE rowid = ?`);
    for (const b of bad) {
      keep.run(opts.table, b.key, b.row, b.err.message, now());
      drop.run(b.rowid);
      moved.push(b.err);
    }
  })();
  return moved;
}
