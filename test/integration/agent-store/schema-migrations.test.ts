import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JOB_DB_MIGRATIONS } from "../../../agent/jobs/job-db-schema.js";
import { openJobState } from "../../../agent/jobs/job-state.js";
import { AGENT_DB_MIGRATIONS } from "../../../agent/store/agent-db-schema.js";
import { openAgentStore } from "../../../agent/store/agent-store.js";
import { latestVersion, migrateSchema } from "../../../agent/store/schema-migrations.js";
import { openTelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { sha256Hex } from "../../../shared/hash.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import {
  LEGACY_AGENT_DB,
  LEGACY_AGENT_DB_PRAGMAS,
  LEGACY_JOBS_DB,
  LEGACY_JOBS_DB_PRAGMAS,
  LEGACY_TELEMETRY_DB,
  LEGACY_TELEMETRY_DB_PRAGMAS,
} from "./legacy-schemas.js";

/**
 * Issue 23: the agent's three SQLite files carry a schema version (user_version). A file written by
 * the agent before versioning is migrated in place with its rows; a file from a newer agent is
 * refused (STORAGE_FAILED, cause SCHEMA_NEWER), the store runs in memory and never writes over it;
 * a corrupt row is a clear STORAGE_FAILED naming the row, not a SyntaxError or a wrong type later.
 */
const log = pino({ level: "silent" });
const SHA = "ab".repeat(32);
const REF = { version: "1.2.0", variant: "fp32", sha256: SHA, releaseCounter: 3 };
const ERR = { code: "SMOKE_TEST_FAILED", message: "outputs differ", details: { sample: 0 } };

let tmp: Awaited<ReturnType<typeof makeTempDir>>;
beforeEach(async () => {
  tmp = await makeTempDir("ef-migr-");
});
afterEach(async () => {
  await tmp.cleanup();
});

/** A file as the previous agent left it: its pragmas, its DDL, `rows` written, then closed. */
function legacyFile(name: string, pragmas: string[], ddl: string, rows: (db: Database.Database) => void): string {
  const path = join(tmp.path, name);
  const db = new Database(path);
  for (const p of pragmas) db.pragma(p);
  db.exec(ddl);
  rows(db);
  db.close();
  return path;
}
const userVersion = (path: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("user_version", { simple: true }) as number;
  } finally {
    db.close();
  }
};
/** Marks `path` as written by a future agent (schema version 99); returns the file's hash. */
function fromTheFuture(path: string): string {
  const db = new Database(path);
  db.pragma("user_version = 99");
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  return sha256Hex(readFileSync(path));
}
const expectSchemaNewer = (fault: unknown, name: string) => {
  expect(fault).toBeInstanceOf(EdgeFleetError);
  expect(fault).toMatchObject({ code: "STORAGE_FAILED", details: { cause: "SCHEMA_NEWER", found: 99 } });
  expect((fault as Error).message).toContain(`${name} has schema version 99, newer than this agent knows`);
};

describe("the migration runner", () => {
  const V1 = { version: 1, sql: "CREATE TABLE IF NOT EXISTS t (a INTEGER)" };
  const V2 = { version: 2, sql: "ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'" };

  it("applies the pending migrations in order, once; a failing one leaves the version before it and none of its changes", () => {
    const db = new Database(":memory:");
    db.exec("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (7)"); // version 0: the table already there
    expect(migrateSchema(db, { name: "x.db", path: null, migrations: [V1, V2] })).toEqual({ from: 0, to: 2 });
    expect(db.prepare("SELECT a, b FROM t").all()).toEqual([{ a: 7, b: "x" }]);
    expect(migrateSchema(db, { name: "x.db", path: null, migrations: [V1, V2] })).toEqual({ from: 2, to: 2 });

    const V3 = { version: 3, sql: "CREATE TABLE u (x INTEGER); INSERT INTO nowhere VALUES (1)" };
    expect(() => migrateSchema(db, { name: "x.db", path: null, migrations: [V1, V2, V3] })).toThrow(/nowhere/);
    expect(db.pragma("user_version", { simple: true })).toBe(2);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'u'").all()).toEqual([]);
  });

  it("refuses a newer file before writing anything, and migrations numbered out of order", () => {
    const db = new Database(":memory:");
    db.pragma("user_version = 5");
    expect(() => migrateSchema(db, { name: "x.db", path: "/d/x.db", migrations: [V1] })).toThrow(
      expect.objectContaining({
        code: "STORAGE_FAILED",
        details: { path: "/d/x.db", cause: "SCHEMA_NEWER", found: 5, known: 1 },
      }),
    );
    expect(db.prepare("SELECT name FROM sqlite_master").all()).toEqual([]);
    expect(() => latestVersion([V2])).toThrow(/expected 1/);
    expect(latestVersion(AGENT_DB_MIGRATIONS)).toBe(AGENT_DB_MIGRATIONS.length);
  });
});

describe("agent.db", () => {
  const writeLegacy = (models: (db: Database.Database) => void = () => {}) =>
    legacyFile("agent.db", LEGACY_AGENT_DB_PRAGMAS, LEGACY_AGENT_DB, (db) => {
      db.prepare("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
        "tiny",
        "failed",
        JSON.stringify(REF),
        JSON.stringify({ ...REF, version: "2.0.0", releaseCounter: 4 }),
        JSON.stringify(ERR),
        "r-1",
        1,
        "2026-01-01T00:00:00.000Z",
      );
      db.prepare("INSERT INTO desired VALUES (1, 12, ?)").run(JSON.stringify({ seq: 12, models: {} }));
      db.prepare("INSERT INTO kv VALUES ('root', 'R')").run();
      db.prepare("INSERT INTO counters VALUES ('event_seq', 41)").run();
      db.prepare("INSERT INTO release_counters VALUES ('tiny', 4)").run();
      db.prepare("INSERT INTO bad_bundles VALUES (?, 'tiny', 'smoke', 'now')").run("cd".repeat(32));
      db.prepare("INSERT INTO downloads VALUES (?, 100, 60, 'now')").run(SHA);
      models(db);
    });

  it("a file from the previous schema is migrated in place and keeps every row", () => {
    const path = writeLegacy();
    expect(userVersion(path)).toBe(0);
    const store = openAgentStore(path, { log });
    expect(store.health()).toEqual({ mode: "disk", fault: null });
    expect(store.model("tiny")).toEqual({
      model: "tiny",
      state: "failed",
      committed: REF,
      candidate: { ...REF, version: "2.0.0", releaseCounter: 4 },
      error: ERR,
      rolloutId: "r-1",
      probationRestarts: 1,
    });
    expect(store.lastDesired()).toEqual({ seq: 12, document: { seq: 12, models: {} } });
    expect(store.getKv("root")).toBe("R");
    expect(store.nextEventSeq()).toBe(42);
    expect(store.highestCounters()).toEqual(new Map([["tiny", 4]]));
    expect(store.badBundles()).toEqual(new Set(["cd".repeat(32)]));
    expect(store.downloadProgress(SHA)).toBe(60);
    store.close();
    expect(userVersion(path)).toBe(latestVersion(AGENT_DB_MIGRATIONS));
  });

  it("a file from a newer agent is refused: the store runs in memory and never writes over the file", () => {
    const first = openAgentStore(join(tmp.path, "agent.db"), { log });
    first.setKv("root", "from the future");
    first.close();
    const path = join(tmp.path, "agent.db");
    const hash = fromTheFuture(path);

    const store = openAgentStore(path, { log });
    expect(store.health().mode).toBe("memory");
    expectSchemaNewer(store.health().fault, "agent.db");
    expect(store.getKv("root")).toBeNull(); // the newer file's rows are not read with an older schema
    store.setKv("root", "R");
    expect(store.getKv("root")).toBe("R");
    expect(store.restore()).toBe(false);
    store.close();
    expect(sha256Hex(readFileSync(path))).toBe(hash);
    expect(userVersion(path)).toBe(99);
  });

  it("corrupt rows are moved to quarantined_rows at open with a clear reason; one damaged while open is a clear STORAGE_FAILED", () => {
    const path = writeLegacy((db) => {
      db.prepare("UPDATE models SET committed = '{\"version\":' WHERE model = 'tiny'").run();
      db.prepare("INSERT INTO models (model, state, updated_at) VALUES ('odd', 'dancing', 'now')").run();
      db.prepare("INSERT INTO models (model, state, updated_at) VALUES ('fine', 'idle', 'now')").run();
      db.prepare("UPDATE desired SET document = 'not json'").run();
    });
    const store = openAgentStore(path, { log });
    expect(store.models().map((m) => m.model)).toEqual(["fine"]);
    expect(store.model("tiny")).toBeNull();
    expect(store.lastDesired()).toBeNull();
    expect(store.nextEventSeq()).toBe(42); // the rest of the file is as it was

    const side = new Database(path);
    const quarantined = side.prepare("SELECT source, row_key, row, reason FROM quarantined_rows ORDER BY seq").all();
    expect(quarantined).toEqual([
      expect.objectContaining({
        source: "models",
        row_key: "tiny",
        reason: expect.stringMatching(/^agent\.db: row models\[tiny\] is corrupt: committed: not JSON/),
      }),
      expect.objectContaining({
        source: "models",
        row_key: "odd",
        reason: expect.stringMatching(/models\[odd\] is corrupt: state: /),
      }),
      expect.objectContaining({
        source: "desired",
        row_key: "1",
        reason: expect.stringContaining("document: not JSON"),
      }),
    ]);
    expect(JSON.parse((quarantined[0] as { row: string }).row)).toMatchObject({ model: "tiny", state: "failed" });

    // Damage while the store is open (another writer): a clear error naming the row, not a SyntaxError.
    side.prepare("UPDATE models SET error = '{}' WHERE model = 'fine'").run();
    side.close();
    expect(() => store.model("fine")).toThrow(
      expect.objectContaining({
        code: "STORAGE_FAILED",
        details: expect.objectContaining({ cause: "ROW_INVALID", key: "fine" }),
      }),
    );
    expect(() => store.models()).toThrow(/agent\.db: row models\[fine\] is corrupt: error\.code: /);
    store.close();
  });
});

describe("jobs.db", () => {
  const writeLegacy = (extra: (db: Database.Database) => void = () => {}) =>
    legacyFile("jobs.db", LEGACY_JOBS_DB_PRAGMAS, LEGACY_JOBS_DB, (db) => {
      const ins = db.prepare("INSERT INTO job_runs VALUES (?, ?, ?, 'm', '1.0.0', 10, ?, 0, 0, ?, ?, ?)");
      ins.run("nightly", "r1", "failed", 3, 1000, 2000, JSON.stringify(ERR));
      ins.run("nightly", "r2", "running", 4, 3000, null, null);
      extra(db);
    });

  it("a file from the previous schema is migrated in place and keeps every run", () => {
    const path = writeLegacy();
    const jobs = openJobState(path, log);
    expect(jobs.unfinished("nightly")).toMatchObject({ runId: "r2", state: "running", done: 4, error: null });
    expect(jobs.recent("nightly", 5).map((r) => [r.runId, r.state, r.error])).toEqual([
      ["r2", "running", null],
      ["r1", "failed", ERR],
    ]);
    jobs.markResumed("nightly", "r2");
    expect(jobs.count()).toBe(2);
    jobs.close();
    expect(userVersion(path)).toBe(latestVersion(JOB_DB_MIGRATIONS));
  });

  it("a file from a newer agent is refused and left untouched; runs are kept in memory", () => {
    const path = writeLegacy();
    const hash = fromTheFuture(path);
    const jobs = openJobState(path, log);
    expect(jobs.count()).toBe(0);
    jobs.begin({ job: "j", runId: "x", model: "m", version: null, startedAt: 1 });
    expect(jobs.unfinished("j")).toMatchObject({ runId: "x", state: "running" });
    jobs.close();
    expect(sha256Hex(readFileSync(path))).toBe(hash);
  });

  it("a corrupt run is moved to quarantined_rows at open; the others stay", () => {
    const path = writeLegacy((db) => db.prepare("UPDATE job_runs SET state = 'paused' WHERE run_id = 'r2'").run());
    const jobs = openJobState(path, log);
    expect(jobs.recent("nightly", 5).map((r) => r.runId)).toEqual(["r1"]);
    expect(jobs.unfinished("nightly")).toBeNull();
    jobs.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT source, row_key, reason FROM quarantined_rows").all()).toEqual([
      {
        source: "job_runs",
        row_key: "nightly/r2",
        reason: expect.stringMatching(/jobs\.db: row job_runs\[nightly\/r2\] is corrupt: state: /),
      },
    ]);
    db.close();
  });
});

describe("telemetry.db", () => {
  const caps = { maxRows: 1000, maxBytes: 1 << 20 };
  const writeLegacy = () =>
    legacyFile("telemetry.db", LEGACY_TELEMETRY_DB_PRAGMAS, LEGACY_TELEMETRY_DB, (db) => {
      const ins = db.prepare("INSERT INTO records (seq, kind, cost, body) VALUES (?, 'inference', 10, ?)");
      for (const seq of [5, 6, 7]) ins.run(seq, JSON.stringify({ kind: "inference", seq }));
      db.prepare("INSERT INTO meta VALUES ('dropped', 4)").run();
    });

  it("a file from the previous schema is migrated in place and keeps its ring, counters and sequence", () => {
    const path = writeLegacy();
    const ring = openTelemetryBuffer({ path, durability: "full", caps, log });
    expect(ring.stats()).toMatchObject({ rows: 3, bytes: 30, dropped: 4, lastSeq: 7, storage: "disk" });
    expect(ring.readAfter(0, 10).map((r) => r.seq)).toEqual([5, 6, 7]);
    ring.append({
      kind: "inference",
      ts: 1,
      model: "m",
      version: "1.0.0",
      variant: "fp32",
      ok: true,
      computeMs: 0.1,
      totalMs: 0.2,
      nonFinite: 0,
      probe: false,
      source: "api",
    });
    ring.commit();
    expect(ring.readAfter(7, 10).map((r) => r.seq)).toEqual([8]);
    ring.close();
    expect(userVersion(path)).toBe(1);
  });

  it("a file from a newer agent is refused: the ring runs in memory and the file is left untouched", () => {
    const path = writeLegacy();
    const hash = fromTheFuture(path);
    let fault: unknown = null;
    const ring = openTelemetryBuffer({ path, durability: "full", caps, log, onModeChange: (_m, f) => (fault = f) });
    expect(ring.stats()).toMatchObject({ rows: 0, storage: "memory" });
    expectSchemaNewer(fault, "telemetry.db");
    expect(ring.restore()).toBe(false);
    ring.close();
    expect(sha256Hex(readFileSync(path))).toBe(hash);
  });
});
