import type Database from "better-sqlite3";
import { pino } from "pino";
import type { EdgeFleetError, ErrorJson } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { InstalledRef, UpdateState } from "../../shared/schemas/device-state.js";
import { AGENT_DB_MIGRATIONS, DesiredRowSchema, ModelRowSchema } from "./agent-db-schema.js";
import { type DbMode, type FallbackDbOptions, openFallbackDb } from "./fallback-db.js";
import { decodeRow, migrateSchema, quarantineInvalidRows } from "./schema-migrations.js";

/** One model's persisted update record (architecture.md §5). */
export interface ModelRecord {
  model: string;
  state: UpdateState;
  committed: InstalledRef | null;
  candidate: InstalledRef | null;
  error: ErrorJson | null;
  rolloutId: string | null;
  /** Agent restarts seen while this candidate was in probation (crash-loop guard, architecture.md §5). */
  probationRestarts: number;
}

export interface AgentStore {
  lastDesired(): { seq: number; document: unknown } | null;
  acceptDesired(seq: number, document: unknown): void;
  models(): ModelRecord[];
  model(name: string): ModelRecord | null;
  /** Persists a model record and allocates the event sequence number for its transition, atomically. */
  saveModel(record: ModelRecord): number;
  nextEventSeq(): number;
  highestCounters(): Map<string, number>;
  raiseCounter(model: string, counter: number): void;
  badBundles(): Set<string>;
  markBad(sha256: string, model: string, reason: string): void;
  downloadProgress(sha256: string): number | null;
  setDownloadProgress(sha256: string, size: number, contiguous: number): void;
  clearDownload(sha256: string): void;
  getKv(key: string): string | null;
  setKv(key: string, value: string): void;
  close(): void;
}

const BUMP_EVENT_SEQ =
  "INSERT INTO counters (name, value) VALUES ('event_seq', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value";
const UPSERT_MODEL = `INSERT INTO models (model, state, committed, candidate, error, rollout_id, probation_restarts, updated_at)
    VALUES (@model, @state, @committed, @candidate, @error, @rolloutId, @probationRestarts, @at)
    ON CONFLICT(model) DO UPDATE SET state = excluded.state, committed = excluded.committed, candidate = excluded.candidate,
      error = excluded.error, rollout_id = excluded.rollout_id, probation_restarts = excluded.probation_restarts, updated_at = excluded.updated_at`;

/** For stores opened without a logger (tests): storage faults are still handled, only not logged. */
const silentLogger: Logger = pino({ level: "silent" });

/** A `models` row decoded at the boundary (issue 23): a corrupt one is a clear STORAGE_FAILED. */
function toRecord(row: unknown, path: string): ModelRecord {
  const key = String((row as { model?: unknown }).model);
  const r = decodeRow(ModelRowSchema, row, { db: "agent.db", path, table: "models", key });
  return {
    model: r.model,
    state: r.state,
    committed: r.committed,
    candidate: r.candidate,
    error: r.error,
    rolloutId: r.rollout_id,
    probationRestarts: r.probation_restarts,
  };
}

/** Where the store keeps its state right now (issue 20 §2), for `reported` and the storage monitor. */
export interface StoreHealth {
  mode: DbMode;
  fault: EdgeFleetError | null;
}

export interface AgentStoreOptions {
  now?: () => number;
  log?: Logger;
  onModeChange?: FallbackDbOptions["onModeChange"];
}

/**
 * `{dataDir}/agent.db`: WAL + synchronous=FULL, so a transition that returned is on disk even
 * if power is cut right after (architecture.md §5: every transition is persisted before it is published).
 * better-sqlite3 is synchronous; each method is one statement or one transaction.
 *
 * On a full, read-only or failing disk (issue 20 §2) the store never throws for it: it continues on
 * an in-memory copy (agent/store/fallback-db.ts) and `restore()` writes it back when it can.
 */
export function openAgentStore(
  path: string,
  nowOrOpts: (() => number) | AgentStoreOptions = {},
): AgentStore & { health(): StoreHealth; restore(): boolean } {
  const opts: AgentStoreOptions = typeof nowOrOpts === "function" ? { now: nowOrOpts } : nowOrOpts;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? silentLogger;
  const where = { db: "agent.db", path };
  const h = openFallbackDb({
    path,
    log,
    init(db, onDisk) {
      if (onDisk) {
        db.pragma("journal_mode = WAL");
        db.pragma("synchronous = FULL");
        db.pragma("busy_timeout = 5000");
      }
      migrateSchema(db, { name: "agent.db", path, migrations: AGENT_DB_MIGRATIONS });
      const at = () => new Date(now()).toISOString();
      const moved = [
        ...quarantineInvalidRows(
          db,
          { ...where, table: "models", schema: ModelRowSchema, keyOf: (r) => String(r.model) },
          at,
        ),
        ...quarantineInvalidRows(db, { ...where, table: "desired", schema: DesiredRowSchema, keyOf: () => "1" }, at),
      ];
      for (const err of moved) {
        log.error({ err: err.toJSON() }, "corrupt row moved to quarantined_rows; the agent carries on without it");
      }
    },
    ...(opts.onModeChange ? { onModeChange: opts.onModeChange } : {}),
  });
  const iso = () => new Date(now()).toISOString();
  const q = (sql: string) => h.prepare(sql);

  const nextEventSeq = () => (q(BUMP_EVENT_SEQ).get() as { value: number }).value;
  const saveModel = (db: Database.Database, r: ModelRecord): number =>
    db.transaction(() => {
      q(UPSERT_MODEL).run({
        model: r.model,
        state: r.state,
        committed: r.committed ? JSON.stringify(r.committed) : null,
        candidate: r.candidate ? JSON.stringify(r.candidate) : null,
        error: r.error ? JSON.stringify(r.error) : null,
        rolloutId: r.rolloutId,
        probationRestarts: r.probationRestarts,
        at: iso(),
      });
      return nextEventSeq();
    })();

  return {
    lastDesired() {
      const row = h.run(() => q("SELECT seq, document FROM desired WHERE id = 1").get());
      return row ? decodeRow(DesiredRowSchema, row, { db: "agent.db", path, table: "desired", key: "1" }) : null;
    },
    acceptDesired(seq, document) {
      h.run(() =>
        q(
          "INSERT INTO desired (id, seq, document) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, document = excluded.document",
        ).run(seq, JSON.stringify(document)),
      );
    },
    models: () => h.run(() => q("SELECT * FROM models ORDER BY model").all()).map((row) => toRecord(row, path)),
    model(name) {
      const row = h.run(() => q("SELECT * FROM models WHERE model = ?").get(name));
      return row ? toRecord(row, path) : null;
    },
    saveModel: (r) => h.run((db) => saveModel(db, r)),
    nextEventSeq: () => h.run((db) => db.transaction(nextEventSeq)()),
    highestCounters() {
      const rows = h.run(() => q("SELECT model, highest FROM release_counters").all()) as {
        model: string;
        highest: number;
      }[];
      return new Map(rows.map((r) => [r.model, r.highest]));
    },
    raiseCounter(model, counter) {
      h.run(() =>
        q(
          "INSERT INTO release_counters (model, highest) VALUES (?, ?) ON CONFLICT(model) DO UPDATE SET highest = max(highest, excluded.highest)",
        ).run(model, counter),
      );
    },
    badBundles: () =>
      new Set((h.run(() => q("SELECT sha256 FROM bad_bundles").all()) as { sha256: string }[]).map((r) => r.sha256)),
    markBad(sha256, model, reason) {
      h.run(() =>
        q("INSERT OR IGNORE INTO bad_bundles (sha256, model, reason, at) VALUES (?, ?, ?, ?)").run(
          sha256,
          model,
          reason,
          iso(),
        ),
      );
    },
    downloadProgress(sha256) {
      const row = h.run(() => q("SELECT contiguous FROM downloads WHERE sha256 = ?").get(sha256)) as
        | { contiguous: number }
        | undefined;
      return row ? row.contiguous : null;
    },
    setDownloadProgress(sha256, size, contiguous) {
      h.run(() =>
        q(
          "INSERT INTO downloads (sha256, size, contiguous, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, contiguous = excluded.contiguous, updated_at = excluded.updated_at",
        ).run(sha256, size, contiguous, iso()),
      );
    },
    clearDownload(sha256) {
      h.run(() => q("DELETE FROM downloads WHERE sha256 = ?").run(sha256));
    },
    getKv(key) {
      const row = h.run(() => q("SELECT value FROM kv WHERE key = ?").get(key)) as { value: string } | undefined;
      return row?.value ?? null;
    },
    setKv(key, value) {
      h.run(() =>
        q("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(
          key,
          value,
        ),
      );
    },
    health: () => ({ mode: h.mode(), fault: h.fault() }),
    restore: () => h.restore(),
    close: () => h.close(),
  };
}
