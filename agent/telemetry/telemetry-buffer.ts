import { statSync } from "node:fs";
import type { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { TELEMETRY_MAX_RECORD_BYTES, type UnsequencedRecord } from "../../shared/schemas/telemetry.js";
import { type DbMode, openFallbackDb } from "../store/fallback-db.js";
import { migrateSchema, refuseNewerSchema } from "../store/schema-migrations.js";
import { evictionProbe, overCaps, type RingCaps, rowCost, rowsToEvict, walBudget } from "./ring-accounting.js";
import { TELEMETRY_DB_MIGRATIONS } from "./telemetry-db-schema.js";

export type Durability = "full" | "normal";

export interface TelemetryBufferOptions {
  /** `{dataDir}/telemetry.db`: its own file, so telemetry I/O never contends with update state. */
  path: string;
  durability: Durability;
  caps: RingCaps;
  log: Logger;
  /** `normal` mode: records are committed at most this long after they were appended. */
  commitIntervalMs?: number;
  /** Every record lost before the server had it, with why (`edgefleet_telemetry_dropped_total`). */
  onDropped?: (reason: DropReason, records: number) => void;
  /** Records committed while the ring is in memory (a storage fault): kept, but not durable. */
  onVolatile?: (records: number) => void;
  /** The ring moved to memory (a storage fault) or back to its file. */
  onModeChange?: (mode: DbMode, fault: EdgeFleetError | null) => void;
}

/**
 * Why a record was lost: the ring was full (oldest evicted), the record was over the size cap, too
 * many records waited for their commit, the commit failed even in memory, or the server rejected
 * its batch (issue 20 §2: every loss is counted where the operator sees it).
 */
export type DropReason = "ring_full" | "oversize" | "overflow" | "commit_failed" | "rejected";

export interface BufferedRow {
  seq: number;
  /** The record's JSON with `seq` spliced in, ready to be put in a batch. */
  json: string;
}

export interface BufferStats {
  rows: number;
  /** Accounted payload bytes. */
  bytes: number;
  /** Rows evicted by the ring before they were acknowledged (cumulative, persisted). */
  dropped: number;
  /** Rows removed because the server rejected their batch (cumulative, persisted). */
  rejected: number;
  /** Appended but not yet committed to SQLite. */
  pending: number;
  /** Database + WAL file size. */
  fileBytes: number;
  lastSeq: number;
  /** `memory` while a storage fault keeps the ring off its file (issue 20 §2): not durable then. */
  storage: DbMode;
}

export interface TelemetryBuffer {
  /** Queues a record; it gets its sequence number when committed. Never throws. */
  append(record: UnsequencedRecord): void;
  /** Commits everything queued in one transaction (evicting the oldest rows if over the caps). */
  commit(): void;
  /** Resolves once every record appended before the call is committed (`full`), or at once (`normal`). */
  durable(): Promise<void>;
  /** Up to `limit` committed rows with seq > `afterSeq`, oldest first. */
  readAfter(afterSeq: number, limit: number): BufferedRow[];
  /** Deletes rows with seq in [first, last] (the server acknowledged them). */
  remove(first: number, last: number, reason: "acked" | "rejected"): number;
  stats(): BufferStats;
  /** Memory mode only: writes the ring back to its file once the disk takes writes. True when on disk. */
  restore(): boolean;
  close(): void;
}

/** Committing in slices keeps one transaction (and so the WAL) small even after a long stall. */
const COMMIT_SLICE = 500;
const MAX_PENDING = 20_000;

/**
 * The device's telemetry ring (architecture.md §5): SQLite in WAL mode, appends batched into one
 * transaction per event-loop turn (`full`) or per `commitIntervalMs` (`normal`).
 *
 * Invariants (better-sqlite3 is synchronous and this object is the only writer, so each method
 * runs to completion without interleaving):
 * - `rows`/`bytes` in memory always equal COUNT/SUM(cost) of the table after each method.
 * - A sequence number is assigned once, at commit, strictly increasing, never reused
 *   (AUTOINCREMENT keeps the high-water mark even when the table is emptied).
 * - A row leaves the table only by ack, by rejection, or by eviction; evictions are counted in
 *   the same transaction that deletes them, so the count survives any crash.
 */
export function openTelemetryBuffer(opts: TelemetryBufferOptions): TelemetryBuffer {
  const { log, caps } = opts;
  const wal = walBudget(caps.maxBytes);
  const h = openFallbackDb({
    path: opts.path,
    log,
    init(db, onDisk) {
      const schema = { name: "telemetry.db", path: opts.path, migrations: TELEMETRY_DB_MIGRATIONS };
      refuseNewerSchema(db, schema); // before auto_vacuum, which writes the header of a newer file too
      if (onDisk) {
        // auto_vacuum must be chosen before the first table exists; INCREMENTAL lets us give freed pages back.
        db.pragma("auto_vacuum = INCREMENTAL");
        db.pragma("journal_mode = WAL");
        db.pragma(`synchronous = ${opts.durability === "full" ? "FULL" : "NORMAL"}`);
        db.pragma(`wal_autocheckpoint = ${wal.pages}`);
        db.pragma(`journal_size_limit = ${wal.bytes}`);
      }
      migrateSchema(db, schema);
    },
    ...(opts.onModeChange ? { onModeChange: opts.onModeChange } : {}),
  });
  const q = (sql: string) => h.prepare(sql);
  const INSERT = "INSERT INTO records (seq, kind, cost, body) VALUES (?, ?, ?, ?)";
  const OLDEST = "SELECT seq, cost FROM records ORDER BY seq LIMIT ?";
  const DELETE_UP_TO = "DELETE FROM records WHERE seq <= ?";
  const DELETE_RANGE = "DELETE FROM records WHERE seq BETWEEN ? AND ? RETURNING cost";
  const AFTER = "SELECT seq, body FROM records WHERE seq > ? ORDER BY seq LIMIT ?";
  const ADD_META =
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value";
  const meta = (k: string) =>
    (h.run(() => q("SELECT value FROM meta WHERE key = ?").get(k)) as { value: number } | undefined)?.value ?? 0;
  const addMeta = (k: string, n: number) => q(ADD_META).run(k, n);
  /** Counts a loss in memory at once and, best effort, in the file (a full disk may refuse even that). */
  const lose = (reason: DropReason, n: number) => {
    dropped += n;
    opts.onDropped?.(reason, n);
    try {
      h.run(() => addMeta("dropped", n));
    } catch {
      /* counted in memory at least */
    }
  };

  const totals = h.run(() => q("SELECT COUNT(*) AS n, COALESCE(SUM(cost), 0) AS b FROM records").get()) as {
    n: number;
    b: number;
  };
  const state = { rows: totals.n, bytes: totals.b };
  let dropped = meta("dropped");
  let rejected = meta("rejected");
  const seqRow = h.run(() => q("SELECT seq FROM sqlite_sequence WHERE name = 'records'").get()) as
    | { seq: number }
    | undefined;
  let lastSeq = seqRow?.seq ?? 0;

  let pending: { kind: string; body: string }[] = [];
  let waiters: (() => void)[] = [];
  let scheduled: { cancel(): void } | null = null;
  let closed = false;

  const evict = () => {
    let evicted = 0;
    while (overCaps(state, caps)) {
      const rows = q(OLDEST).all(evictionProbe(state, caps)) as { seq: number; cost: number }[];
      if (rows.length === 0) break;
      const n = rowsToEvict(
        state,
        caps,
        rows.map((r) => r.cost),
      );
      if (n === 0) break;
      q(DELETE_UP_TO).run(rows[n - 1]!.seq);
      for (let i = 0; i < n; i++) state.bytes -= rows[i]!.cost;
      state.rows -= n;
      evicted += n;
    }
    if (evicted > 0) addMeta("dropped", evicted);
    return evicted;
  };

  /**
   * One transaction. The in-memory accounting is put back when it fails, so a commit that moves
   * to memory (a storage fault, see fallback-db.ts) runs again there from the same state.
   */
  const commitSlice = (slice: { kind: string; body: string }[]) =>
    h.run((db) => {
      const saved = { lastSeq, rows: state.rows, bytes: state.bytes };
      try {
        return db.transaction(() => {
          for (const r of slice) {
            const cost = rowCost(Buffer.byteLength(r.body));
            lastSeq += 1;
            q(INSERT).run(lastSeq, r.kind, cost, r.body);
            state.rows += 1;
            state.bytes += cost;
          }
          return evict();
        })();
      } catch (err) {
        lastSeq = saved.lastSeq;
        state.rows = saved.rows;
        state.bytes = saved.bytes;
        throw err;
      }
    });

  const schedule = () => {
    if (scheduled || closed) return;
    if (opts.durability === "full") {
      // Group commit: everything appended in this event-loop turn shares one fsync.
      const t = setImmediate(() => {
        scheduled = null;
        commitNow();
      });
      scheduled = { cancel: () => clearImmediate(t) };
    } else {
      const t = setTimeout(() => {
        scheduled = null;
        commitNow();
      }, opts.commitIntervalMs ?? 200);
      t.unref();
      scheduled = { cancel: () => clearTimeout(t) };
    }
  };

  function commitNow(): void {
    if (closed) return;
    const snapshot = pending;
    pending = [];
    const done = waiters;
    waiters = [];
    let committed = 0;
    try {
      for (let i = 0; i < snapshot.length; i += COMMIT_SLICE) {
        const slice = snapshot.slice(i, i + COMMIT_SLICE);
        const evicted = commitSlice(slice);
        committed = i + slice.length;
        if (h.mode() === "memory") opts.onVolatile?.(slice.length);
        if (evicted > 0) {
          dropped += evicted;
          opts.onDropped?.("ring_full", evicted);
          log.debug({ evicted, dropped }, "telemetry ring full; oldest rows dropped");
        }
      }
    } catch (err) {
      // A storage fault moves the ring to memory (the commit then succeeds there); reaching this
      // means even that failed. These records are lost: counted, so the loss is visible.
      const lost = snapshot.length - committed;
      log.error({ err, lost }, "telemetry commit failed; records dropped");
      lose("commit_failed", lost);
    }
    for (const w of done) w();
  }

  return {
    append(record) {
      if (closed) return;
      let body = JSON.stringify(record);
      if (Buffer.byteLength(body) > TELEMETRY_MAX_RECORD_BYTES) {
        log.warn({ kind: record.kind, bytes: body.length }, "telemetry record over the size cap; dropped");
        body = "";
      }
      if (body === "" || pending.length >= MAX_PENDING) {
        lose(body === "" ? "oversize" : "overflow", 1);
        return;
      }
      pending.push({ kind: record.kind, body });
      if (opts.durability === "normal" && pending.length >= COMMIT_SLICE) {
        scheduled?.cancel();
        scheduled = null;
        commitNow();
        return;
      }
      schedule();
    },
    commit() {
      scheduled?.cancel();
      scheduled = null;
      commitNow();
    },
    durable() {
      if (opts.durability === "normal" || (pending.length === 0 && waiters.length === 0) || closed) {
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        waiters.push(resolve);
        schedule();
      });
    },
    readAfter(afterSeq, limit) {
      const rows = h.run(() => q(AFTER).all(afterSeq, limit)) as { seq: number; body: string }[];
      // Bodies are stored without `seq` (it is assigned at commit); splice it in as the first key.
      return rows.map((r) => ({ seq: r.seq, json: `{"seq":${r.seq},${r.body.slice(1)}` }));
    },
    remove(first, last, reason) {
      const costs = h.run((db) =>
        db.transaction(() => {
          const removed = q(DELETE_RANGE).all(first, last) as { cost: number }[];
          if (reason === "rejected" && removed.length > 0) addMeta("rejected", removed.length);
          return removed;
        })(),
      );
      for (const r of costs) state.bytes -= r.cost;
      state.rows -= costs.length;
      if (reason === "rejected") {
        rejected += costs.length;
        if (costs.length > 0) opts.onDropped?.("rejected", costs.length);
      }
      // Freed pages are reused by later appends; once the ring is empty give them back to the disk.
      if (state.rows === 0 && h.mode() === "disk") {
        try {
          h.db().pragma("incremental_vacuum");
        } catch (err) {
          log.debug({ err }, "incremental vacuum failed");
        }
      }
      return costs.length;
    },
    stats() {
      const size = (p: string) => {
        try {
          return statSync(p).size;
        } catch {
          return 0;
        }
      };
      return {
        rows: state.rows,
        bytes: state.bytes,
        dropped,
        rejected,
        pending: pending.length,
        fileBytes: size(opts.path) + size(`${opts.path}-wal`),
        lastSeq,
        storage: h.mode(),
      };
    },
    restore: () => h.restore(),
    close() {
      if (closed) return;
      commitNow();
      closed = true;
      scheduled?.cancel();
      if (h.mode() === "memory" && !h.restore()) {
        log.error({ rows: state.rows }, "telemetry ring still in memory at shutdown: its unacknowledged rows are lost");
      }
      h.close();
    },
  };
}
