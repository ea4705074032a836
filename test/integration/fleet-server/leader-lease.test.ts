import { afterEach, describe, expect, it } from "vitest";
import { createLeaderLease, type LeaderLease } from "../../../fleet-server/cluster/leader-lease.js";
import { createLeaseRepo } from "../../../fleet-server/cluster/lease-repo.js";
import { type Db, openDatabase } from "../../../fleet-server/store/db.js";
import { createFakeClock } from "../../../shared/clock.js";
import { createLogger } from "../../../shared/logger.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

const log = createLogger({ name: "t", level: "silent", pretty: false });
const timing = { ttlMs: 6000, renewMs: 2000 };
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/**
 * Two replicas on one store: each its own connection to the same SQLite file (as two processes
 * would have), one fake clock for both. Real SQL, real conditional upserts.
 */
async function twoReplicas() {
  const dir = await makeTempDir("lease-");
  const clock = createFakeClock(1_000_000);
  const dbs: Db[] = [];
  const events: string[] = [];
  const open = () => {
    const db = openDatabase(dir.path);
    dbs.push(db);
    return db;
  };
  /** `cut()` makes every store call of this replica fail, as if its process froze or lost the database. */
  const replica = (id: string, cut: { on: boolean } = { on: false }): LeaderLease => {
    const repo = createLeaseRepo(open());
    const guarded = new Proxy(repo, {
      get:
        (target, key: keyof typeof repo) =>
        (...args: never[]) => {
          if (cut.on) throw new Error("store unreachable");
          return (target[key] as (...a: never[]) => unknown)(...args);
        },
    });
    return createLeaderLease({
      log,
      clock,
      repo: guarded,
      name: "rollouts",
      replicaId: id,
      advertiseUrl: () => `http://${id}.example:8080`,
      timing,
      onAcquired: (epoch) => void events.push(`${id} acquired ${epoch}`),
      onLost: (reason) => void events.push(`${id} lost: ${reason}`),
    });
  };
  cleanups.push(async () => {
    for (const db of dbs) db.close();
    await dir.cleanup();
  });
  return { clock, events, replica, raw: () => createLeaseRepo(open()) };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("leader lease over a shared store (issue 14, replicas)", () => {
  it("one replica leads, the other follows it and knows its URL; a graceful stop hands over at the next tick", async () => {
    const { clock, events, replica } = await twoReplicas();
    const a = replica("a");
    const b = replica("b");
    await a.start();
    await b.start();
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect(b.leaderUrl()).toBe("http://a.example:8080");
    expect(a.leaderUrl()).toBeNull();
    // Renewals keep it: many TTLs later a still leads and b never claimed it.
    for (let i = 0; i < 10; i++) {
      clock.advance(timing.renewMs);
      await settle();
    }
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    await a.stop();
    clock.advance(timing.renewMs);
    await settle();
    expect(b.isLeader()).toBe(true);
    expect(events).toEqual(["a acquired 1", "a lost: stopping", "b acquired 2"]);
    await b.stop();
  });

  it("a leader that stops renewing (killed) is replaced only after its lease expires, with a new epoch", async () => {
    const { clock, events, replica, raw } = await twoReplicas();
    const cutA = { on: false };
    const a = replica("a", cutA);
    const b = replica("b");
    await a.start();
    await b.start();
    const expiresAt = raw().get("rollouts")!.expiresAt;
    // a can no longer renew (no release either: a SIGKILLed process writes nothing).
    cutA.on = true;
    let aSteppedDownAt: number | null = null;
    let bTookOverAt: number | null = null;
    for (let t = 0; t < 6 && bTookOverAt === null; t++) {
      clock.advance(timing.renewMs);
      await settle();
      if (!a.isLeader()) aSteppedDownAt ??= clock.now();
      if (b.isLeader()) bTookOverAt = clock.now();
      // Never two leaders at once.
      expect(a.isLeader() && b.isLeader()).toBe(false);
    }
    expect(bTookOverAt).not.toBeNull();
    expect(bTookOverAt!).toBeGreaterThanOrEqual(expiresAt);
    expect(aSteppedDownAt!).toBeLessThan(expiresAt);
    expect(raw().get("rollouts")).toMatchObject({ holder: "b", epoch: 2 });
    expect(events).toEqual(["a acquired 1", "a lost: renewal failed", "b acquired 2"]);
    await b.stop();
  });

  it("of two replicas claiming the same expired lease in the same instant, exactly one wins", async () => {
    const { clock, raw } = await twoReplicas();
    const repo = raw();
    const now = clock.now();
    expect(repo.claim("rollouts", "x", null, now + 10, now)).toBe(true);
    const later = now + 20;
    const wins = [
      repo.claim("rollouts", "a", null, later + 6000, later),
      repo.claim("rollouts", "b", null, later + 6000, later),
    ];
    expect(wins).toEqual([true, false]);
    expect(repo.get("rollouts")).toMatchObject({ holder: "a", epoch: 2 });
    // Renewal by the holder keeps the epoch; release makes it claimable at once.
    expect(repo.claim("rollouts", "a", null, later + 9000, later + 1)).toBe(true);
    expect(repo.get("rollouts")).toMatchObject({ holder: "a", epoch: 2, expiresAt: later + 9000 });
    repo.release("rollouts", "a");
    expect(repo.claim("rollouts", "b", null, later + 9000, later + 2)).toBe(true);
    expect(repo.get("rollouts")).toMatchObject({ holder: "b", epoch: 3 });
  });
});
