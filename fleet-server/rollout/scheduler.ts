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
}

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

  async function tickAll(): Promise<void> {
    for (const row of rollouts.listByStatus(PLANNED)) {
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
    timer = clock.setTimeout(() => {
      void serialize(tickAll).finally(schedule);
    }, tickMs);
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
      void serialize(async () => {
        pokeQueued = false;
        await tickAll();
      });
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
