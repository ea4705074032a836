import { z } from "zod";
import type { Db } from "./db.js";
import { decodeJson } from "./row-codec.js";
import { dialectOf } from "./sql-db.js";

/** The columns the store needs; the rest of the document is opaque here. */
export interface BuildRecordKeys {
  id: string;
  status: "running" | "succeeded" | "failed";
  createdAt: string;
  endedAt?: string | undefined;
}

export interface BuildRetention {
  /** Finished builds kept at most, newest first. */
  maxFinished: number;
  /** Finished builds older than this (by `endedAt`) are dropped. */
  maxAgeMs: number;
}

export function createBuildRepo(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO model_builds (id, status, created_at, ended_at, state, owner) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT(id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at, state = excluded.state`,
  );
  const byId = db.prepare("SELECT id, state FROM model_builds WHERE id = ?");
  // PostgreSQL has no rowid (insertion order, the tie-break among builds created in the same
  // millisecond) nor `LIMIT -1` (no limit): there the tie-break is the id and the limit `ALL`.
  const pg = dialectOf(db) === "postgres";
  const tieBreak = pg ? "id" : "rowid";
  const running = db.prepare(
    `SELECT id, state, owner FROM model_builds WHERE status = 'running' ORDER BY created_at, ${tieBreak}`,
  );
  // The tracker owns the document's schema (it parses it with zod); the store checks it is a
  // JSON object, so a corrupt row names its table and id instead of failing inside the tracker.
  const state = (r: { id: string; state: string }): unknown =>
    decodeJson(z.looseObject({}), r.state, { table: "model_builds", key: `id=${r.id}`, column: "state" });
  // ISO-8601 UTC strings from toISOString() have one fixed width, so text order is time order.
  const pruneAge = db.prepare("DELETE FROM model_builds WHERE status != 'running' AND ended_at < ?");
  const pruneCount = db.prepare(
    `DELETE FROM model_builds WHERE id IN (
       SELECT id FROM model_builds WHERE status != 'running' ORDER BY ended_at DESC, ${tieBreak} DESC LIMIT ${pg ? "ALL" : "-1"} OFFSET ?
     )`,
  );

  return {
    /** Inserts or replaces a build document; `owner` (the replica running it) is kept from the insert. */
    save(build: BuildRecordKeys, owner: string | null = null): void {
      upsert.run(build.id, build.status, build.createdAt, build.endedAt ?? null, JSON.stringify(build), owner);
    },
    /** The stored document, unparsed (the tracker owns its schema). */
    get(id: string): unknown {
      const r = byId.get(id) as { id: string; state: string } | undefined;
      return r ? state(r) : null;
    },
    /** Builds stored as running, with the replica that runs them (null: stored before migration 14). */
    running(): { doc: unknown; owner: string | null }[] {
      return (running.all() as { id: string; state: string; owner: string | null }[]).map((r) => ({
        doc: state(r),
        owner: r.owner,
      }));
    },
    /** Drops finished builds beyond the retention; running ones are never dropped. Returns how many went. */
    prune(retention: BuildRetention, now: number): number {
      return db.transaction(() => {
        const old = pruneAge.run(new Date(now - retention.maxAgeMs).toISOString()).changes;
        return old + pruneCount.run(Math.max(0, retention.maxFinished)).changes;
      })();
    },
  };
}
export type BuildRepo = ReturnType<typeof createBuildRepo>;
