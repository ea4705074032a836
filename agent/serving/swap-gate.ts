import type { Clock } from "../../shared/clock.js";
import type { LockManager } from "./update-locks.js";

/** Without a deadline from the rollout's health policy, a swap waits at most this long for locks. */
export const DEFAULT_LOCK_WAIT_SECONDS = 300;

export interface DeferringReport {
  reason: "update-lock";
  since: string;
  until: string;
  locks: number;
}

/**
 * The updater's swap step calls this before switching versions: resolves at once without locks,
 * otherwise when the last lock is released or expires, or at the deadline. `onDefer` reports the
 * wait (the updater puts it into `reported.models[].deferring`).
 */
export async function waitForUpdateLocks(opts: {
  locks: Pick<LockManager, "waitForSwap">;
  clock: Clock;
  maxWaitSeconds: number | undefined;
  onDefer: (d: DeferringReport) => void;
}): Promise<"no-locks" | "deadline"> {
  const deadline = opts.clock.now() + (opts.maxWaitSeconds ?? DEFAULT_LOCK_WAIT_SECONDS) * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();
  return opts.locks.waitForSwap(deadline, (d) =>
    opts.onDefer({ reason: "update-lock", since: iso(d.since), until: iso(d.until), locks: d.locks }),
  );
}
