/**
 * The fleet server's store as the repositories use it (issue 14): the subset of better-sqlite3's
 * synchronous API they call, so a better-sqlite3 `Database` is one implementation as it is, and
 * the PostgreSQL bridge (`pg-bridge.ts`) is the other. Synchronous on purpose: the server is
 * written against "a statement is a function call" (transactions that sign and store in one step,
 * the rollout planner); an async interface would rewrite every caller. docs/operations.md
 * "PostgreSQL" measures what that costs.
 */
export interface SqlRunResult {
  changes: number;
}

export interface SqlStatement {
  /** Positional `?` values, or one object for `@name` parameters. */
  run(...args: unknown[]): SqlRunResult;
  get(...args: unknown[]): unknown;
  all(...args: unknown[]): unknown[];
}

export interface SqlDb {
  /**
   * Absent on a plain better-sqlite3 `Database` (tests open one directly), so read it with
   * `dialectOf`. Repositories branch on it only where a statement really differs.
   */
  readonly dialect?: "sqlite" | "postgres";
  prepare(sql: string): SqlStatement;
  /** One or more statements without parameters (migrations). */
  exec(sql: string): unknown;
  /**
   * Like better-sqlite3: returns a function that runs `fn` in a transaction (nested calls become
   * savepoints); a throw rolls it back and is re-thrown. `fn` must be synchronous.
   */
  transaction<F extends SqlTxFunction>(fn: F): (...args: SqlTxArgs<F>) => ReturnType<F>;
  close(): unknown;
}

// biome-ignore lint/suspicious/noExplicitAny: the shape of better-sqlite3's own typing, so its Database is a SqlDb
export type SqlTxFunction = (...params: any[]) => unknown;
export type SqlTxArgs<F extends SqlTxFunction> = F extends (...args: infer A) => unknown ? A : never;

export type SqlDialect = "sqlite" | "postgres";

export function dialectOf(db: SqlDb): SqlDialect {
  return db.dialect === "postgres" ? "postgres" : "sqlite";
}
