import { randomUUID } from "node:crypto";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { liveLocks, swapGate, type UpdateLock } from "./lock-decisions.js";

export interface LockManagerDeps {
  log: Logger;
  clock: Clock;
  /** Longest TTL an app may ask for (default 1 h): a lock is a critical section, not a pause button. */
  maxTtlSeconds?: number;
}

export interface Deferral {
  since: number;
  until: number;
  locks: number;
}

export interface LockManager {
  acquire(req: { ttlSeconds: number; holder?: string }): UpdateLock;
  /** Renews a live lock's TTL from now. */
  renew(id: string, ttlSeconds: number): UpdateLock;
  release(id: string): void;
  list(): UpdateLock[];
  /**
   * Resolves when a swap may proceed: no live lock, or `deadline` (epoch ms) reached. `onDefer` is
   * called each time the wait (re)starts, so the updater can report that it is deferring.
   * Resolves with how it ended.
   */
  waitForSwap(deadline: number, onDefer: (d: Deferral) => void): Promise<"no-locks" | "deadline">;
  close(): void;
}

/**
 * In-memory update locks. Concurrency invariant: every change to the lock set (acquire, renew,
 * release) wakes all waiters, which re-run the pure `swapGate`; a waiter also wakes at the next
 * expiry or its deadline, so no waiter sleeps past a moment the answer could change.
 * Locks live in memory on purpose: an agent restart already interrupts every app, and a lock that
 * survived it would block updates for an app that no longer exists.
 */
export function createLockManager(deps: LockManagerDeps): LockManager {
  const log = deps.log.child({ component: "update-locks" });
  const maxTtl = deps.maxTtlSeconds ?? 3600;
  const locks = new Map<string, UpdateLock>();
  const wakers = new Set<() => void>();
  const wakeAll = () => {
    for (const w of [...wakers]) w();
  };
  const prune = () => {
    const now = deps.clock.now();
    for (const [id, l] of locks) if (l.expiresAt <= now) locks.delete(id);
  };
  const ttlMs = (s: number) => {
    if (!(s > 0) || s > maxTtl) {
      throw new EdgeFleetError("BAD_REQUEST", `ttlSeconds must be in (0, ${maxTtl}]`);
    }
    return s * 1000;
  };

  return {
    acquire({ ttlSeconds, holder }) {
      const now = deps.clock.now();
      const lock: UpdateLock = {
        id: randomUUID(),
        holder: holder ?? "",
        acquiredAt: now,
        expiresAt: now + ttlMs(ttlSeconds),
      };
      prune();
      locks.set(lock.id, lock);
      log.info({ id: lock.id, holder: lock.holder, ttlSeconds }, "update lock acquired");
      wakeAll();
      return lock;
    },
    renew(id, ttlSeconds) {
      prune();
      const l = locks.get(id);
      if (!l) throw new EdgeFleetError("NOT_FOUND", `no live update lock ${id}`);
      l.expiresAt = deps.clock.now() + ttlMs(ttlSeconds);
      wakeAll();
      return { ...l };
    },
    release(id) {
      prune();
      if (!locks.delete(id)) throw new EdgeFleetError("NOT_FOUND", `no live update lock ${id}`);
      log.info({ id }, "update lock released");
      wakeAll();
    },
    list() {
      return liveLocks([...locks.values()], deps.clock.now()).map((l) => ({ ...l }));
    },
    async waitForSwap(deadline, onDefer) {
      const since = deps.clock.now();
      for (;;) {
        const gate = swapGate([...locks.values()], deps.clock.now(), deadline);
        if (gate.kind === "proceed") {
          if (gate.reason === "deadline") log.warn({ deadline }, "update lock still held at the deadline; swapping");
          return gate.reason;
        }
        onDefer({ since, until: gate.until, locks: gate.locks.length });
        await new Promise<void>((resolve) => {
          const done = () => {
            timer.cancel();
            wakers.delete(done);
            resolve();
          };
          const timer = deps.clock.setTimeout(done, Math.max(1, gate.until - deps.clock.now()));
          wakers.add(done);
        });
      }
    },
    close() {
      locks.clear();
      wakeAll();
    },
  };
}
