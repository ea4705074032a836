/**
 * Leadership among fleet-server replicas (issue 14): one replica at a time owns rollout execution.
 * The lease is one row in the shared store; the holder renews it well before it expires, any other
 * replica takes it once it has expired. This file only decides; `leader-lease.ts` runs the SQL.
 *
 * Why a lease row and not a PostgreSQL advisory lock: it works the same on SQLite (one process, or
 * several on one file) and PostgreSQL, it survives a dropped database connection without silently
 * losing the lock, and its state (who, since when, which URL) is readable for forwarding and for
 * operators. The price is that a crashed holder is replaced only after the lease runs out (TTL).
 */

export interface LeaseRow {
  holder: string;
  /** Where other replicas reach the holder's API (operator commands are forwarded there). */
  holderUrl: string | null;
  /** Incremented on every change of holder: a fencing token for logs and checks. */
  epoch: number;
  /** Wall-clock ms (the replicas' clocks must agree to well under the TTL: NTP). */
  expiresAt: number;
}

export interface LeaseTiming {
  ttlMs: number;
  /** How often the holder renews and others try: a third of the TTL leaves two retries before expiry. */
  renewMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { ttlMs: 6_000, renewMs: 2_000 };

export type LeaseAction =
  /** Write the row as ours (new holder: epoch + 1; renewal: same epoch), expiring at `expiresAt`. */
  | { kind: "claim"; expiresAt: number }
  /** Someone else holds a live lease: stay standby and remember where the leader is. */
  | { kind: "follow"; leader: LeaseRow };

/**
 * What a replica does on a lease tick. A replica never claims a live lease held by another, and
 * always (re)claims its own or an expired one; the store's conditional write settles a race between
 * two replicas claiming the same expired lease (only one UPDATE matches).
 */
export function planLease(row: LeaseRow | null, me: string, now: number, timing: LeaseTiming): LeaseAction {
  if (row === null || row.holder === me || row.expiresAt <= now)
    return { kind: "claim", expiresAt: now + timing.ttlMs };
  return { kind: "follow", leader: row };
}

/**
 * Whether a holder still may act as leader at `now`: it stops a margin before its own expiry, so
 * a replica whose renewals fail (database unreachable, a long pause) steps down before anyone else
 * can take over, rather than at the same instant.
 */
export function stillLeader(expiresAt: number, now: number, timing: LeaseTiming): boolean {
  return now < expiresAt - Math.min(timing.renewMs, timing.ttlMs / 3);
}
