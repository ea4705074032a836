import { hostname } from "node:os";
import type { Clock } from "../../shared/clock.js";
import type { LeaseRepo } from "./lease-repo.js";

/** `{hostname}-{pid}-{6 hex}` (leadership.ts `newReplicaId`): where and as which process a replica runs. */
export function parseReplicaId(id: string): { host: string; pid: number } | null {
  const m = /^(.+)-(\d+)-[0-9a-f]{6}$/.exec(id);
  return m ? { host: m[1]!, pid: Number(m[2]) } : null;
}

/**
 * Whether a replica is gone (issue 14: its running model builds are then interrupted). Each live
 * replica renews a `replica:{id}` lease; one whose lease ran out, or that never had one, is gone.
 * A replica on this same host is also gone as soon as its process is: a server restarted after a
 * crash interrupts its predecessor's builds at once instead of a TTL later.
 */
export function isReplicaGone(
  id: string | null,
  facts: { leaseExpiresAt: number | null; now: number; localHost: string; processAlive(pid: number): boolean },
): boolean {
  if (id === null) return true;
  if (facts.leaseExpiresAt === null || facts.leaseExpiresAt <= facts.now) return true;
  const where = parseReplicaId(id);
  return where !== null && where.host === facts.localHost && !facts.processAlive(where.pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export const replicaLeaseName = (id: string) => `replica:${id}`;

/** The I/O around `isReplicaGone`: this replica's heartbeat, and the check of another's. */
export function createReplicaLiveness(deps: { repo: LeaseRepo; clock: Clock; replicaId: string; ttlMs: number }) {
  const { repo, clock, replicaId, ttlMs } = deps;
  const localHost = hostname();
  return {
    /** Renews this replica's own lease (no one else ever claims it). */
    heartbeat(): void {
      const now = clock.now();
      repo.claim(replicaLeaseName(replicaId), replicaId, null, now + ttlMs, now);
    },
    release(): void {
      repo.release(replicaLeaseName(replicaId), replicaId);
    },
    isGone(id: string | null): boolean {
      if (id === replicaId) return false;
      const row = id === null ? null : repo.get(replicaLeaseName(id));
      return isReplicaGone(id, { leaseExpiresAt: row?.expiresAt ?? null, now: clock.now(), localHost, processAlive });
    },
  };
}
