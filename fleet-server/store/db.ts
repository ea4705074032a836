import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { MIGRATIONS } from "./migrations.js";
import { openPostgresBridge } from "./pg-bridge.js";
import { translateDdl } from "./pg-sql.js";
import { dialectOf, type SqlDb } from "./sql-db.js";

/** The store the repositories use: better-sqlite3 itself, or the PostgreSQL bridge (issue 14). */
export type Db = SqlDb;
/** The embedded store: better-sqlite3's own Database (a `Db` as it is). */
export type SqliteDb = Database.Database;

/** Opens `{dataDir}/fleet.db` in WAL mode and applies pending migrations in one transaction each. */
export function openDatabase(dataDir: string): SqliteDb {
  mkdirSync(dataDir, { recursive: true });
  const db = new Database(join(dataDir, "fleet.db"));
  // WAL lets HTTP reads proceed while MQTT handlers write; NORMAL is durable across process
  // crashes (only an OS crash can lose the last transactions, which devices re-report anyway).
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  return db;
}

/**
 * The fleet server's store: PostgreSQL when `databaseUrl` is set (`--database-url`), else the
 * embedded SQLite file in `dataDir`. Migrations are applied either way.
 */
export function openStore(opts: { dataDir: string; databaseUrl?: string | undefined; timeoutMs?: number }): Db {
  if (opts.databaseUrl === undefined) return openDatabase(opts.dataDir);
  const db = openPostgresBridge(opts.databaseUrl, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  try {
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** An arbitrary constant: serialises migrations of servers starting together on one PostgreSQL. */
const MIGRATION_LOCK = 14_014;

export function migrate(db: Db): void {
  const pg = dialectOf(db) === "postgres";
  const ddl = (sql: string) => (pg ? translateDdl(sql) : sql);
  if (pg) db.exec(`SELECT pg_advisory_lock(${MIGRATION_LOCK})`);
  try {
    db.exec(
      ddl("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"),
    );
    const applied = new Set(
      (db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      db.transaction(() => {
        db.exec(ddl(m.sql));
        db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(
          m.version,
          new Date().toISOString(),
        );
      })();
    }
  } finally {
    if (pg) db.exec(`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`);
  }
}
