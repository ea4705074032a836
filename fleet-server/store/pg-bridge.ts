import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import { EdgeFleetError } from "../../shared/errors.js";
import type { BridgeError, BridgeReply, BridgeRequest, BridgeWorkerData } from "./pg-protocol.js";
import { bindValues, translateStatement } from "./pg-sql.js";
import type { SqlDb, SqlStatement, SqlTxArgs, SqlTxFunction } from "./sql-db.js";

/**
 * PostgreSQL behind the synchronous `SqlDb` interface (issue 14): a worker thread holds one
 * `pg.Client` (`pg-worker.ts`); each statement is posted to it and the main thread blocks on
 * `Atomics.wait` until the reply is there. The event loop does not run during a round trip
 * (docs/benchmarks.md "Store engines (issue 14)" measures it); the next step, if that ever limits,
 * is an async store interface.
 */
export interface PgBridgeOptions {
  /** Per statement, enforced by PostgreSQL (`statement_timeout`) and, with a second more, by the wait. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Distinct statement texts kept as named (server-side prepared) statements per connection. */
const NAMED_MAX = 1000;

/**
 * The codes the repositories and their callers may see, in SQLite's names (the code was written
 * against better-sqlite3); the PostgreSQL SQLSTATE stays on the error as `pgCode`.
 */
const SQLITE_CODE: Record<string, string> = {
  "23505": "SQLITE_CONSTRAINT_UNIQUE",
  "23503": "SQLITE_CONSTRAINT_FOREIGNKEY",
  "23502": "SQLITE_CONSTRAINT_NOTNULL",
  "23514": "SQLITE_CONSTRAINT_CHECK",
  // RAISE EXCEPTION in the append-only triggers (SQLite: RAISE(ABORT) in a trigger).
  P0001: "SQLITE_CONSTRAINT_TRIGGER",
};

/** SQLSTATE classes meaning "the database is not there" rather than "this statement is wrong". */
const UNAVAILABLE_CLASSES = ["08", "53", "57", "3D"];

export class PgStoreError extends Error {
  readonly code: string;
  readonly pgCode: string | undefined;
  readonly detail: string | undefined;
  constructor(e: BridgeError) {
    super(e.message);
    this.name = "PgStoreError";
    this.pgCode = e.code;
    this.code = (e.code && SQLITE_CODE[e.code]) ?? (e.code ? `PG_${e.code}` : "PG_ERROR");
    this.detail = e.detail;
  }
}

function isUnavailable(e: BridgeError): boolean {
  if (e.code !== undefined && /^[0-9A-Z]{5}$/.test(e.code)) return UNAVAILABLE_CLASSES.includes(e.code.slice(0, 2));
  // A Node socket error (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND, …).
  if (e.code !== undefined) return /^E[A-Z]+$/.test(e.code);
  // The driver's own words for a connection that failed, ended or timed out; anything else without
  // a code is a bug on this side (a value the driver cannot send), not an outage.
  return /connect|terminated|timeout|timed out|ended|not queryable/i.test(e.message);
}

/**
 * The worker: under tsx (the server as run today, tests) this module is a .ts file and so is the
 * worker, a compiled build has both as .js. Node 20 does not apply `--import tsx` loader hooks in
 * worker threads, so a .ts worker is started by a two-line CommonJS script that registers tsx's
 * require hook (which works in any thread) and requires it.
 */
function workerSource(): { source: string | URL; eval: boolean } {
  if (!import.meta.url.endsWith(".ts")) return { source: new URL("./pg-worker.js", import.meta.url), eval: false };
  const tsx = createRequire(import.meta.url).resolve("tsx/cjs/api");
  const file = fileURLToPath(new URL("./pg-worker.ts", import.meta.url));
  return { source: `require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(file)});`, eval: true };
}

export function openPostgresBridge(url: string, opts: PgBridgeOptions = {}): SqlDb {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signal = new SharedArrayBuffer(4);
  const counter = new Int32Array(signal);
  const { port1, port2 } = new MessageChannel();
  const w = workerSource();
  const data: BridgeWorkerData = { url, timeoutMs, signal, port: port2 };
  const worker = new Worker(w.source, { eval: w.eval, workerData: data, transferList: [port2] });
  // A store left open must not keep the process alive; `close()` ends it properly.
  worker.unref();
  let workerFailure: Error | null = null;
  worker.on("error", (err) => {
    workerFailure = err;
  });
  worker.on("exit", () => {
    workerFailure ??= new Error("the store worker exited");
  });

  let nextId = 1;
  let closed = false;

  function call(req: BridgeRequest, what: string): Extract<BridgeReply, { rows: unknown }> {
    if (closed) throw new EdgeFleetError("STORE_UNAVAILABLE", "the PostgreSQL store is closed");
    port1.postMessage(req);
    const deadline = Date.now() + timeoutMs + 1000;
    for (;;) {
      const seen = Atomics.load(counter, 0);
      // Replies to requests that timed out earlier may come first: skip them.
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) {
        const r = m.message as BridgeReply;
        if (r.id !== req.id) continue;
        if (r.error === undefined) return r;
        if (isUnavailable(r.error))
          throw new EdgeFleetError("STORE_UNAVAILABLE", `PostgreSQL store unavailable: ${r.error.message}`, {
            cause: new PgStoreError(r.error),
          });
        throw new PgStoreError(r.error);
      }
      if (workerFailure)
        throw new EdgeFleetError("STORE_UNAVAILABLE", `PostgreSQL store worker failed: ${workerFailure.message}`, {
          cause: workerFailure,
        });
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(counter, 0, seen, Math.min(left, 1000)) === "timed-out") {
        if (Date.now() < deadline) continue;
        throw new EdgeFleetError(
          "STORE_UNAVAILABLE",
          `PostgreSQL store did not answer within ${timeoutMs + 1000} ms (${what.slice(0, 80)})`,
        );
      }
    }
  }

  const named = new Map<string, string>();
  const nameFor = (text: string): string | undefined => {
    let n = named.get(text);
    if (n === undefined && named.size < NAMED_MAX) {
      n = `ef${named.size + 1}`;
      named.set(text, n);
    }
    return n;
  };

  const query = (text: string, values: unknown[]) => {
    const name = nameFor(text);
    return call({ id: nextId++, op: "query", text, values, ...(name ? { name } : {}) }, text);
  };
  const execText = (text: string) => {
    call({ id: nextId++, op: "exec", text }, text);
  };

  let depth = 0;
  const db: SqlDb = {
    dialect: "postgres",
    prepare(sql: string): SqlStatement {
      const stmt = translateStatement(sql);
      return {
        run: (...args) => ({ changes: query(stmt.text, bindValues(stmt, args)).changes }),
        get: (...args) => query(stmt.text, bindValues(stmt, args)).rows[0],
        all: (...args) => query(stmt.text, bindValues(stmt, args)).rows,
      };
    },
    exec(sql: string) {
      execText(sql);
      return db;
    },
    transaction<F extends SqlTxFunction>(fn: F) {
      return (...args: SqlTxArgs<F>): ReturnType<F> => {
        const outer = depth === 0;
        const savepoint = `ef_sp_${depth}`;
        execText(outer ? "BEGIN" : `SAVEPOINT ${savepoint}`);
        depth++;
        let result: ReturnType<F>;
        try {
          result = fn(...args) as ReturnType<F>;
          if (result !== null && typeof (result as { then?: unknown })?.then === "function")
            throw new TypeError("Transaction function cannot return a promise");
        } catch (err) {
          depth--;
          try {
            execText(outer ? "ROLLBACK" : `ROLLBACK TO SAVEPOINT ${savepoint}; RELEASE SAVEPOINT ${savepoint}`);
          } catch {
            // The rollback failing (connection gone) loses nothing more: the first error is the one to report.
          }
          throw err;
        }
        depth--;
        execText(outer ? "COMMIT" : `RELEASE SAVEPOINT ${savepoint}`);
        return result;
      };
    },
    close() {
      if (closed) return;
      try {
        call({ id: nextId++, op: "close" }, "close");
      } catch {
        // Closing a store whose database is gone: nothing to flush.
      }
      closed = true;
      port1.close();
      void worker.terminate();
    },
  };
  return db;
}
