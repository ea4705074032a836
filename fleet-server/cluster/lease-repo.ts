import type { Db } from "../store/db.js";
import type { LeaseRow } from "./lease-plan.js";

/** Migration 13 (issue 14, replicas): named leases in the shared store (see lease-plan.ts). */
export const LEASES_MIGRATION_SQL = `
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  holder_url TEXT,
  epoch INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
`;

interface RawLease {
  holder: string;
  holder_url: string | null;
  epoch: number;
  expires_at: number;
}

/**
 * The lease statements. The claim is one conditional upsert, portable between SQLite (≥ 3.24) and
 * PostgreSQL: it writes only when the row is ours or expired, so of two replicas racing for an
 * expired lease exactly one sees `changes === 1`. A new holder bumps the epoch; a renewal keeps it.
 */
export function createLeaseRepo(db: Db) {
  const read = db.prepare("SELECT holder, holder_url, epoch, expires_at FROM leases WHERE name = ?");
  const claim = db.prepare(
    `INSERT INTO leases (name, holder, holder_url, epoch, expires_at) VALUES (?, ?, ?, 1, ?)
     ON CONFLICT (name) DO UPDATE SET
       epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END,
       holder = excluded.holder, holder_url = excluded.holder_url, expires_at = excluded.expires_at
     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
  );
  const release = db.prepare("UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?");
  return {
    get(name: string): LeaseRow | null {
      const r = read.get(name) as RawLease | undefined;
      if (!r) return null;
      return { holder: r.holder, holderUrl: r.holder_url, epoch: Number(r.epoch), expiresAt: Number(r.expires_at) };
    },
    /** True when the row is now ours until `expiresAt`. */
    claim(name: string, holder: string, holderUrl: string | null, expiresAt: number, now: number): boolean {
      return claim.run(name, holder, holderUrl, expiresAt, now).changes === 1;
    },
    /** Gives the lease up at once (graceful stop): the next replica need not wait out the TTL. */
    release(name: string, holder: string): void {
      release.run(name, holder);
    },
  };
}
export type LeaseRepo = ReturnType<typeof createLeaseRepo>;
