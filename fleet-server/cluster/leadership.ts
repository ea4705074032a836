import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";
import type { Db } from "../store/db.js";
import { createLeaderLease } from "./leader-lease.js";
import { createLeaseRepo } from "./lease-repo.js";
import { createReplicaLiveness } from "./replica-liveness.js";
import { retainedSeq } from "./republish-plan.js";

/** A replica's id: readable in logs and in the lease row, unique per process start. */
export function newReplicaId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

export interface LeaderDuties {
  transport: Transport;
  topics: Topics;
  /** The rollout scheduler: runs only while this replica leads. */
  scheduler: { start(): void; stop(): Promise<void> };
  republishDesired(retained?: ReadonlyMap<string, number | null>): Promise<number>;
  /** The embedded broker just started empty: nothing is retained, so there is nothing to read first. */
  freshBroker: boolean;
}

/**
 * Rollout execution follows the "rollouts" lease (issue 14, docs/operations.md "Replicas"). A
 * lone server takes the lease at its first tick and keeps it; with replicas, the one holding it
 * runs the scheduler and keeps devices' desired documents retained, the others serve the API and
 * device messages and forward rollout commands to it.
 */
export function createLeadership(deps: {
  log: Logger;
  clock: Clock;
  db: Db;
  replicaId: string;
  leaseTtlMs: number;
  advertiseUrl: () => string | null;
}) {
  const log = deps.log.child({ replica: deps.replicaId });
  let duties: LeaderDuties | null = null;
  let firstAcquisition = true;

  /** Retains again what the broker lacks; a failure is logged, never stops leadership. */
  async function republish(reason: string): Promise<void> {
    const d = duties;
    if (!d) return;
    try {
      let retained: Map<string, number | null> | undefined;
      if (!(d.freshBroker && firstAcquisition)) {
        retained = new Map();
        const found = await d.transport.readRetained(d.topics.allDevices("desired"), { quietMs: 300, maxMs: 10_000 });
        for (const [topic, payload] of found) {
          const t = d.topics.parse(topic);
          if (t) retained.set(t.deviceId, retainedSeq(payload));
        }
      }
      const published = await d.republishDesired(retained);
      log.info({ reason, published, retained: retained?.size ?? null }, "desired documents retained again");
    } catch (err) {
      log.warn({ err, reason }, "re-retaining desired documents failed");
    }
  }

  const timing = { ttlMs: deps.leaseTtlMs, renewMs: Math.max(250, Math.floor(deps.leaseTtlMs / 3)) };
  const repo = createLeaseRepo(deps.db);
  // Every replica says it is alive on each lease tick (its model builds are not interrupted by others).
  const liveness = createReplicaLiveness({ repo, clock: deps.clock, replicaId: deps.replicaId, ttlMs: timing.ttlMs });
  const lease = createLeaderLease({
    log,
    clock: deps.clock,
    repo,
    onTick: () => liveness.heartbeat(),
    name: "rollouts",
    replicaId: deps.replicaId,
    advertiseUrl: deps.advertiseUrl,
    timing,
    async onAcquired() {
      // A previous leader may have stored a document and died before publishing it.
      await republish(firstAcquisition ? "start" : "took over");
      firstAcquisition = false;
      duties?.scheduler.start();
    },
    async onLost() {
      await duties?.scheduler.stop();
    },
  });

  return {
    replicaId: deps.replicaId,
    isLeader: () => lease.isLeader(),
    /** Whether the replica `id` stopped (its running model builds are then interrupted). */
    isReplicaGone: (id: string | null) => liveness.isGone(id),
    leaderUrl: () => lease.leaderUrl(),
    async start(d: LeaderDuties): Promise<void> {
      duties = d;
      await lease.start();
    },
    /** The broker came back: it may have lost retained messages (restarted without persistence). */
    onBrokerReconnect(): void {
      if (lease.isLeader()) void republish("broker reconnected");
    },
    async stop(): Promise<void> {
      await lease.stop();
      try {
        liveness.release();
      } catch (err) {
        log.warn({ err }, "releasing the replica heartbeat failed; it expires by itself");
      }
    },
  };
}
export type Leadership = ReturnType<typeof createLeadership>;
