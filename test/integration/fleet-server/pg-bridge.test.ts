import { createServer, type Server } from "node:net";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { openPostgresBridge } from "../../../fleet-server/store/pg-bridge.js";
import type { SqlDb } from "../../../fleet-server/store/sql-db.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { freePort } from "../../helpers/ports.js";
import { createTestDatabase, postgresSkipReason, type TestDatabase } from "../../helpers/postgres.js";

/**
 * The synchronous PostgreSQL bridge's failure paths (issue 14): a database that is not there, or
 * does not answer, or cancels a statement, is a STORE_UNAVAILABLE EdgeFleetError (HTTP 503) within
 * the store's timeout rather than a server that hangs; a statement error crosses the thread with its
 * SQLSTATE; a dropped connection is made again by the next statement.
 */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("PostgreSQL bridge without a database", () => {
  let silent: Server | undefined;
  afterEach(() => {
    silent?.close();
  });

  it("nothing listening: STORE_UNAVAILABLE", async () => {
    const db = openPostgresBridge(`postgres://x@127.0.0.1:${await freePort()}/x`, { timeoutMs: 2000 });
    const err = thrown(() => db.prepare("SELECT 1").get());
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect((err as EdgeFleetError).code).toBe("STORE_UNAVAILABLE");
    db.close();
  });

  it("a peer that accepts and never answers: STORE_UNAVAILABLE after the timeout, not a hang", async () => {
    silent = createServer(() => {});
    await new Promise<void>((r) => silent!.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    const db = openPostgresBridge(`postgres://x@127.0.0.1:${port}/x`, { timeoutMs: 300 });
    const err = thrown(() => db.exec("SELECT 1"));
    expect((err as EdgeFleetError).code).toBe("STORE_UNAVAILABLE");
    db.close();
  });
});

describe.skipIf(postgresSkipReason !== null)("PostgreSQL bridge on a real database", () => {
  let t: TestDatabase | undefined;
  let db: SqlDb | undefined;
  afterEach(async () => {
    db?.close();
    await t?.drop();
  });

  it("a statement error keeps its SQLSTATE; a too-slow statement is cancelled as STORE_UNAVAILABLE; the store stays usable", async () => {
    t = await createTestDatabase();
    db = openPostgresBridge(t.url, { timeoutMs: 500 });
    const syntax = thrown(() => db!.prepare("SELEKT 1").all()) as { code: string; pgCode: string };
    expect(syntax).toMatchObject({ code: "PG_42601", pgCode: "42601" });
    const slow = thrown(() => db!.prepare("SELECT pg_sleep(5)").get());
    expect((slow as EdgeFleetError).code).toBe("STORE_UNAVAILABLE");
    expect(db.prepare("SELECT COUNT(*) AS n, 2.5::float8 AS r, 'x' AS s").get()).toEqual({ n: 1, r: 2.5, s: "x" });
  });

  it("a connection killed by the server is made again by a later statement", async () => {
    t = await createTestDatabase();
    db = openPostgresBridge(t.url);
    const pid = (db.prepare("SELECT pg_backend_pid() AS pid").get() as { pid: number }).pid;
    const admin = new pg.Client({ connectionString: t.url });
    await admin.connect();
    await admin.query("SELECT pg_terminate_backend($1)", [pid]);
    await admin.end();
    // The first statement may meet the dead socket (STORE_UNAVAILABLE); the next one reconnects.
    let after: unknown;
    for (let i = 0; i < 3 && after === undefined; i++) {
      try {
        after = db.prepare("SELECT pg_backend_pid() AS pid").get();
      } catch (err) {
        expect((err as EdgeFleetError).code).toBe("STORE_UNAVAILABLE");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect((after as { pid: number }).pid).not.toBe(pid);
  });
});
