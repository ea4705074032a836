/**
 * Update locks (issue 8): an app in a critical section asks the agent not to swap models under it.
 * Pure arbitration; the lock manager does the timers and I/O.
 */
export interface UpdateLock {
  id: string;
  /** Free text from the app, for status and logs. */
  holder: string;
  acquiredAt: number;
  expiresAt: number;
}

export function liveLocks(locks: readonly UpdateLock[], now: number): UpdateLock[] {
  return locks.filter((l) => l.expiresAt > now);
}

export type SwapGate =
  | { kind: "proceed"; reason: "no-locks" | "deadline" }
  | { kind: "wait"; until: number; locks: UpdateLock[] };

/**
 * Whether a swap may happen now. While any lock is live it waits, until the earliest of the next lock
 * expiry and the deadline; at the deadline it proceeds anyway, so an app that forgets to release (or
 * keeps renewing) cannot hold a fleet rollout past the deadline the rollout set. Pure.
 */
export function swapGate(locks: readonly UpdateLock[], now: number, deadline: number): SwapGate {
  const live = liveLocks(locks, now);
  if (live.length === 0) return { kind: "proceed", reason: "no-locks" };
  if (now >= deadline) return { kind: "proceed", reason: "deadline" };
  const nextExpiry = Math.min(...live.map((l) => l.expiresAt));
  return { kind: "wait", until: Math.min(nextExpiry, deadline), locks: live };
}
