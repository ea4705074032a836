import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { RolloutRepo } from "../store/rollout-repo.js";
import type { RolloutExecutor } from "./executor.js";

export interface SchedulerDeps {
  log: Logger;
  clock: Clock;
  rollouts: RolloutRepo;
  executor: RolloutExecutor;
  /** Period of the planning tick; device messages also trigger a tick. */
  tickMs?: number;
  /**
   * Checked before each rollout step (issue 14, replicas): false once this replica is no longer
   * sure it holds the rollouts lease, so a replica that lost it mid-tick stops at the next rollout.
   */
  mayRun?: () => boolean;
}

/** A tick shorter than this never delays the next one (small fleets, the tests). */
const PACE_ABOVE_MS = 50;

/** Rollouts the scheduler plans: those that may still assign, time out or roll back devices. */
const PLANNED = ["running", "paused", "completed", "rolling-back"] as const;

/**
 * The thin loop around the pure planner: a periodic tick plus a tick on every device message,
 * all serialized on one chain with the HTTP commands, so two steps never interleave their
 * read-plan-write of the same rollout. State lives in SQLite only: a restarted server simply
 * plans again from what was persisted.
 */
export function createRolloutScheduler(deps: SchedulerDeps) {
  const { log, clock, rollouts, executor } = deps;
  const tickMs = deps.tickMs ?? 1000;
  let chain: Promise<unknown> = Promise.resolve();
  let timer: { cancel(): void } | null = null;
  let stopped = false;
  let pokeQueued = false;

  function serialize<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = chain.then(fn);
    chain = run.catch(() => undefined);
    return run;
  }

  /** Real time (not `clock`): pacing is about CPU actually spent, which a test clock does not move. */
  let lastTick = { endedAt: 0, tookMs: 0 };

  async function tickAll(): Promise<void> {
    const started = performance.now();
    try {
      await tickRollouts();
    } catch (err) {
      // The store itself failed (issue 14: PostgreSQL unreachable, STORE_UNAVAILABLE): the next tick
      // retries. Left to the callers' `void` promises it was an unhandled rejection, ending the process.
      log.error({ err }, "rollout tick failed");
    } finally {
      const endedAt = performance.now();
      lastTick = { endedAt, tookMs: endedAt - started };
    }
  }

  /**
   * How long a device-triggered tick waits so that planning takes at most a fifth of the event loop
   * (issue 14): a tick over 10,000 devices costs a noticeable time, and 10,000 devices reporting after
   * a fan-out would otherwise chain ticks back to back and starve the API. Cheap ticks run at once.
   */
  function pokeDelayMs(): number {
    if (lastTick.tookMs < PACE_ABOVE_MS) return 0;
    return Math.max(0, lastTick.endedAt + lastTick.tookMs * 4 - performance.now());
  }

  async function tickRollouts(): Promise<void> {
    for (const row of rollouts.listByStatus(PLANNED)) {
      if (deps.mayRun && !deps.mayRun()) return;
      try {
        await executor.step(row);
      } catch (err) {
        // One broken rollout must not stop the others; it is retried on the next tick.
        log.error({ err, rollout: row.id }, "rollout step failed");
      }
    }
  }

  function schedule(): void {
    if (stopped) return;
    // start() after stop() while a tick was in flight: that tick's finally() schedules too.
    timer?.cancel();
    // A long tick spaces the periodic ones too (at most a fifth of the loop, see pokeDelayMs).
    const paced = lastTick.tookMs < PACE_ABOVE_MS ? tickMs : Math.max(tickMs, lastTick.tookMs * 4);
    timer = clock.setTimeout(() => {
      void serialize(tickAll).finally(schedule);
    }, paced);
  }

  return {
    serialize,
    start(): void {
      stopped = false;
      schedule();
    },
    /** A device reported something: plan soon, coalescing bursts into one pending tick. */
    poke(): void {
      if (stopped || pokeQueued) return;
      pokeQueued = true;
      const run = () =>
        void serialize(async () => {
          pokeQueued = false;
          if (!stopped) await tickAll();
        });
      const wait = pokeDelayMs();
      if (wait > 0) setTimeout(run, wait);
      else run();
    },
    /** Plans one rollout now (after create and operator commands). */
    stepNow(id: string): Promise<void> {
      return serialize(async () => {
        const row = rollouts.get(id);
        if (row) await executor.step(row);
      });
    },
    async stop(): Promise<void> {
      stopped = true;
      timer?.cancel();
      await chain;
    },
  };
}
export type RolloutScheduler = ReturnType<typeof createRolloutScheduler>;
