import type { Clock } from "../../shared/clock.js";
import { percentile } from "../updater/health-summary.js";

/**
 * When shadow work may use the CPU (issue 8: "shadow never affects the caller").
 *
 * On a 2-core device the caller's request, the agent's event loop and the serving host already
 * share the cores; a shadow run started right after a reply lands on top of the caller's next
 * request when requests come back to back (measured: p50 +8–16 % at sampleRate 1 with the shadow
 * host at nice 10, docs/benchmarks.md). So sampled requests wait in a small queue and a shadow runs
 * only in idle time: no caller request in flight on any model, and either
 *  - the traffic's own quiet periods are long enough: the 10th percentile of the last quiet periods
 *    (reply written → next request) is at least `headroom` × the shadow's typical run time, so a run
 *    started now is very likely over before the next request (an app polling every few ms); or
 *  - nothing has arrived for `idleGapMs` (bursty traffic, between bursts).
 * A device that is never idle runs no shadow at all; the samples it drops are counted
 * (`skippedBusy`) and reported, so an operator sees why a shadow gate has too few comparisons
 * instead of callers paying for them.
 */
export interface ShadowPolicy {
  /** Quiet time after the last caller activity after which a shadow run may start regardless. */
  idleGapMs: number;
  /** Quiet periods must be this many times the shadow's run time to start right after a reply. */
  headroom: number;
  /** Sampled requests kept waiting for idle time; further samples are skipped (bounded memory). */
  maxQueued: number;
  /** A sample older than this is dropped rather than run (its comparison would describe old traffic). */
  maxAgeMs: number;
  /**
   * Longest wait between two looks at a busy device. Each look that finds callers still active
   * doubles the next wait (from `idleGapMs`); a look that finds the device idle for at least that
   * long halves it again, so the wait follows how busy the device usually is instead of starting
   * over at every burst.
   * Why so sparing: a timer firing in the agent costs its callers far more than the callback itself
   * (measured back to back, no-op interval timer: every 2 ms +14 % p50, every 8 ms +6 %, every 32 ms
   * none; a timer re-armed per request +20 %; docs/benchmarks.md).
   */
  maxBackoffMs: number;
}

export const DEFAULT_SHADOW_POLICY: ShadowPolicy = {
  idleGapMs: 2,
  headroom: 3,
  maxQueued: 8,
  maxAgeMs: 10_000,
  maxBackoffMs: 64,
};

export type ShadowPlan =
  | { kind: "none"; expire: number }
  | { kind: "run"; expire: number }
  | { kind: "wait"; ms: number; expire: number };

export interface ShadowQueueState {
  /** Enqueue times, oldest first. */
  queuedAt: readonly number[];
  running: boolean;
  primaryInFlight: number;
  /** Last caller activity (request start, end, or reply written). */
  lastPrimaryAt: number;
  /** 10th percentile of recent quiet periods between caller requests; null until there are enough. */
  quietP10Ms: number | null;
  /** 90th percentile of the same; null until there are enough. */
  quietP90Ms: number | null;
  /** Typical shadow run time (median of the last runs); null before the first run. */
  shadowMs: number | null;
  /**
   * The backoff exponent: +1 for each timer look that found the device busy, −1 for each that found
   * it idle for at least the current wait, between 0 and `maxLooksExponent(policy)`.
   */
  futileLooks: number;
}

/**
 * The next step of the shadow queue. Pure. `expire` is how many of the oldest entries to drop as
 * stale before acting.
 */
export function planShadowDispatch(s: ShadowQueueState, now: number, policy: ShadowPolicy): ShadowPlan {
  let expire = 0;
  while (expire < s.queuedAt.length && now - (s.queuedAt[expire] ?? now) > policy.maxAgeMs) expire++;
  if (expire === s.queuedAt.length) return { kind: "none", expire };
  // One shadow run at a time (its end re-plans).
  if (s.running) return { kind: "none", expire };
  const quiet = now - s.lastPrimaryAt;
  if (s.primaryInFlight === 0) {
    // Quiet for the idle gap — and past the traffic's usual gaps: with an app calling every 4 ms,
    // 2 ms of quiet is the middle of a gap, and a run started then collides with the next call.
    const usualGap = s.quietP90Ms === null ? 0 : Math.min(2 * s.quietP90Ms, MAX_IDLE_WAIT_MS);
    if (quiet >= Math.max(policy.idleGapMs, usualGap)) return { kind: "run", expire };
    // Gaps below the idle gap are think time between back-to-back calls, not idle time: the shadow's
    // run time measured while idle understates what it costs then (measured +8 % p50 without this).
    if (
      s.quietP10Ms !== null &&
      s.shadowMs !== null &&
      s.quietP10Ms >= Math.max(policy.idleGapMs, policy.headroom * s.shadowMs)
    ) {
      return { kind: "run", expire };
    }
  }
  // Not before the gap could have passed; later the busier the device has proved to be.
  const backoff = Math.max(
    policy.idleGapMs * 2 ** Math.min(s.futileLooks, maxLooksExponent(policy)),
    policy.idleGapMs - quiet,
  );
  return { kind: "wait", ms: Math.ceil(Math.min(policy.maxBackoffMs, backoff)), expire };
}

/** The exponent at which the backoff reaches `maxBackoffMs` (more futile looks change nothing). */
export function maxLooksExponent(policy: ShadowPolicy): number {
  return Math.max(0, Math.ceil(Math.log2(policy.maxBackoffMs / Math.max(policy.idleGapMs, 0.001))));
}

/** Recent quiet periods kept: short, so a change of traffic (a burst ending, polling starting) is learned within ~20 calls. */
const QUIET_WINDOW = 24;
/** The idle wait never exceeds this, however sparse the traffic (sparse traffic runs right after replies). */
const MAX_IDLE_WAIT_MS = 1000;
/** Shadow run times kept for their median (robust to a run slowed by contention). */
const RUN_WINDOW = 16;
/** Percentiles are recomputed every QUIET_EVERY new quiet periods (a sort per call is waste). */
const QUIET_EVERY = 4;

export interface ShadowJob {
  run(): Promise<void>;
  /** Called instead of `run` when the job is dropped (queue full, stale, or scheduler closed). */
  dropped(): void;
}

export interface ShadowScheduler {
  /** A caller request started (any model, any strategy). */
  primaryStarted(): void;
  /** A caller request ended; pair with `primaryStarted`. */
  primaryFinished(): void;
  /** Whether a new sample would be queued; when not, skip it before doing any work for it. */
  hasRoom(): boolean;
  /** Queues a sampled shadow request (the caller's reply is already written); dropped when full. */
  offer(job: ShadowJob): void;
  queued(): number;
  /** Changes the policy from the next decision on (agent config reload, benchmarks). */
  setPolicy(policy: ShadowPolicy): void;
  close(): void;
}

/**
 * The executor of `planShadowDispatch`. Invariants: at most one shadow run in flight; a run starts
 * only when `planShadowDispatch` says so (never while a caller request is in flight); the queue
 * never holds more than `maxQueued`; every offered job is either run once or dropped once. Costs
 * nothing while the queue is empty (no timer), and holds at most one timer otherwise.
 */
export function createShadowScheduler(deps: {
  clock: Pick<Clock, "now" | "setTimeout">;
  policy: ShadowPolicy;
}): ShadowScheduler {
  const { clock } = deps;
  let policy = deps.policy;
  const queue: { at: number; job: ShadowJob }[] = [];
  let running = false;
  let primaryInFlight = 0;
  let lastPrimaryAt = Number.NEGATIVE_INFINITY;
  let timer: { cancel(): void } | null = null;
  let closed = false;
  /** Recent quiet periods (ms), the last QUIET_WINDOW; percentiles recomputed every QUIET_EVERY new ones. */
  const quiet: number[] = [];
  let quietP10: number | null = null;
  let quietP90: number | null = null;
  let quietNew = 0;
  let shadowMs: number | null = null;
  const runs: number[] = [];
  let futileLooks = 0;

  const pump = (fromTimer = false) => {
    if (closed) return;
    if (quietNew >= QUIET_EVERY && quiet.length >= QUIET_WINDOW / 2) {
      quietP10 = percentile(quiet, 10);
      quietP90 = percentile(quiet, 90);
      quietNew = 0;
    }
    // A timer that fires into a busy device is a futile look; the plan then waits twice as long.
    const looks = Math.min(futileLooks + (fromTimer ? 1 : 0), maxLooksExponent(policy));
    const plan = planShadowDispatch(
      {
        queuedAt: queue.map((q) => q.at),
        running,
        primaryInFlight,
        lastPrimaryAt,
        quietP10Ms: quietP10,
        quietP90Ms: quietP90,
        shadowMs,
        futileLooks: looks,
      },
      clock.now(),
      policy,
    );
    for (const stale of queue.splice(0, plan.expire)) stale.job.dropped();
    if (plan.kind === "wait") {
      futileLooks = looks;
      // One timer at most, never cancelled by caller activity: re-arming per request is what costs.
      timer ??= clock.setTimeout(() => {
        timer = null;
        pump(true);
      }, plan.ms);
      return;
    }
    if (plan.kind !== "run") return;
    // Not reset to 0: with bursty traffic every burst would start again with looks 2 ms apart. And
    // halved only when the device had been quiet for a whole wait: a look that lands just after a
    // burst proves nothing about the next burst, and halving then put one look into the middle of
    // every burst (measured: +2 % p50 back to back; no look during bursts: +1 %).
    if (fromTimer && clock.now() - lastPrimaryAt >= policy.idleGapMs * 2 ** futileLooks) {
      futileLooks = Math.max(0, futileLooks - 1);
    }
    const next = queue.shift();
    if (!next) return;
    running = true;
    const started = clock.now();
    next.job
      .run()
      .catch(() => undefined) // the job records its own failure; the queue must keep moving
      .finally(() => {
        running = false;
        const ms = clock.now() - started;
        runs.push(ms);
        if (runs.length > RUN_WINDOW) runs.shift();
        shadowMs = percentile(runs, 50);
        pump();
      });
  };

  return {
    primaryStarted() {
      const now = clock.now();
      if (primaryInFlight === 0 && Number.isFinite(lastPrimaryAt)) {
        quiet.push(now - lastPrimaryAt);
        if (quiet.length > QUIET_WINDOW) quiet.shift();
        quietNew++;
      }
      primaryInFlight++;
      lastPrimaryAt = now;
    },
    primaryFinished() {
      // No look here: the reply is not even written yet, and a look per caller request measurably
      // cost callers (+4 % p50 back to back). Samples are looked at when offered, when a shadow run
      // ends and when the (backed-off) timer fires.
      primaryInFlight = Math.max(0, primaryInFlight - 1);
      lastPrimaryAt = clock.now();
    },
    hasRoom: () => !closed && queue.length < policy.maxQueued,
    offer(job) {
      // Writing the caller's reply was caller activity too: the quiet period starts now.
      lastPrimaryAt = Math.max(lastPrimaryAt, clock.now());
      if (closed || queue.length >= policy.maxQueued) {
        job.dropped();
        return;
      }
      queue.push({ at: clock.now(), job });
      pump();
    },
    queued: () => queue.length,
    setPolicy(next) {
      policy = next;
      pump();
    },
    close() {
      closed = true;
      timer?.cancel();
      timer = null;
      for (const q of queue.splice(0)) q.job.dropped();
    },
  };
}
