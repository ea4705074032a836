import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { DEFAULT_LEASE_TIMING, type LeaseRow, type LeaseTiming, planLease, stillLeader } from "./lease-plan.js";
import type { LeaseRepo } from "./lease-repo.js";

export interface LeaderLeaseDeps {
  log: Logger;
  clock: Clock;
  repo: LeaseRepo;
  /** Lease name: one leader per name ("rollouts"). */
  name: string;
  /** This replica's id (unique per process start). */
  replicaId: string;
  /** This replica's API base URL as other replicas reach it; null until the API listens. */
  advertiseUrl: () => string | null;
  timing?: LeaseTiming;
  /** Became leader (epoch = the lease's fencing token). Runs before the next tick. */
  onAcquired(epoch: number): Promise<void> | void;
  /** Stopped being leader (lost the race, renewals failed, or stop()). */
  onLost(reason: string): Promise<void> | void;
  /** Runs at the start of every tick (store I/O that shares its period: the replica heartbeat). */
  onTick?: () => void;
}

/**
 * The thin executor of `planLease`: a tick every `renewMs` reads the row, claims or follows, and
 * reports transitions. Invariants: `onAcquired` and `onLost` alternate, starting with `onAcquired`,
 * and never overlap (they run one after another on their own chain); renewals never wait for them
 * (a slow takeover, e.g. re-retaining 10,000 documents, must not let the lease run out).
 */
export function createLeaderLease(deps: LeaderLeaseDeps) {
  const { log, clock, repo, name, replicaId } = deps;
  const timing = deps.timing ?? DEFAULT_LEASE_TIMING;
  let heldUntil: number | null = null;
  let epoch = 0;
  let leader: LeaseRow | null = null;
  let timer: { cancel(): void } | null = null;
  let stopped = true;
  let running: Promise<void> = Promise.resolve();
  let transitions: Promise<void> = Promise.resolve();

  function transition(what: string, fn: () => Promise<void> | void): void {
    transitions = transitions.then(fn).catch((err: unknown) => log.error({ err, lease: name }, `${what} failed`));
  }

  function lose(reason: string): void {
    if (heldUntil === null) return;
    heldUntil = null;
    log.warn({ lease: name, epoch, reason }, "lost leadership");
    transition("onLost", () => deps.onLost(reason));
  }

  async function tick(): Promise<void> {
    const now = clock.now();
    try {
      deps.onTick?.();
      const action = planLease(repo.get(name), replicaId, now, timing);
      if (action.kind === "follow") {
        leader = action.leader;
        lose(`held by ${action.leader.holder}`);
        return;
      }
      if (!repo.claim(name, replicaId, deps.advertiseUrl(), action.expiresAt, now)) {
        // Another replica won the race for the expired lease between our read and our write.
        leader = repo.get(name);
        lose(`taken by ${leader?.holder ?? "another replica"}`);
        return;
      }
      const row = repo.get(name);
      leader = row;
      const first = heldUntil === null;
      heldUntil = action.expiresAt;
      if (first) {
        epoch = row?.epoch ?? 0;
        log.info({ lease: name, epoch, replica: replicaId }, "became leader");
        const e = epoch;
        transition("onAcquired", () => deps.onAcquired(e));
      }
    } catch (err) {
      // The store is out of reach: keep leading only while the last renewal still covers us.
      log.warn({ err, lease: name }, "lease tick failed");
      if (heldUntil !== null && !stillLeader(heldUntil, clock.now(), timing)) lose("renewal failed");
    }
  }

  function schedule(): void {
    if (stopped) return;
    timer = clock.setTimeout(() => {
      running = tick().finally(schedule);
    }, timing.renewMs);
  }

  return {
    /**
     * Claims at once if it can (a lone server leads from its first second), then ticks. Resolves
     * once the first claim's `onAcquired` has run, so a lone server's rollouts are running on return.
     */
    async start(): Promise<void> {
      stopped = false;
      running = tick();
      await running;
      await transitions;
      schedule();
    },
    /** Leader right now: held and not within the safety margin of expiry (checked at each step). */
    isLeader(): boolean {
      return heldUntil !== null && stillLeader(heldUntil, clock.now(), timing);
    },
    /** The current leader's advertised API URL as last read (null: unknown or this replica). */
    leaderUrl(): string | null {
      if (heldUntil !== null || leader === null || leader.expiresAt <= clock.now()) return null;
      return leader.holderUrl;
    },
    epoch: () => epoch,
    async stop(): Promise<void> {
      stopped = true;
      timer?.cancel();
      await running;
      const held = heldUntil !== null;
      if (held) lose("stopping");
      await transitions;
      if (held) {
        try {
          repo.release(name, replicaId);
        } catch (err) {
          log.warn({ err, lease: name }, "lease release failed; it expires by itself");
        }
      }
    },
  };
}
export type LeaderLease = ReturnType<typeof createLeaderLease>;
