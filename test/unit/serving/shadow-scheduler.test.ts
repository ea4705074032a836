import { describe, expect, it } from "vitest";
import {
  createShadowScheduler,
  DEFAULT_SHADOW_POLICY,
  planShadowDispatch,
  type ShadowQueueState,
} from "../../../agent/serving/shadow-scheduler.js";
import { createFakeClock } from "../../../shared/clock.js";

const policy = DEFAULT_SHADOW_POLICY; // idle gap 2 ms, headroom 3, 8 queued, 10 s max age, 64 ms max backoff
const state = (over: Partial<ShadowQueueState>): ShadowQueueState => ({
  queuedAt: [0],
  running: false,
  primaryInFlight: 0,
  lastPrimaryAt: 0,
  quietP10Ms: null,
  quietP90Ms: null,
  shadowMs: null,
  futileLooks: 0,
  ...over,
});

describe("planShadowDispatch (pure)", () => {
  it("never runs while a caller request is in flight or another shadow runs", () => {
    expect(planShadowDispatch(state({ primaryInFlight: 1 }), 100, policy).kind).toBe("wait");
    expect(planShadowDispatch(state({ running: true }), 100, policy)).toEqual({ kind: "none", expire: 0 });
  });

  it("runs once the device has been quiet for the idle gap, waits before", () => {
    expect(planShadowDispatch(state({ lastPrimaryAt: 10 }), 12, policy)).toEqual({ kind: "run", expire: 0 });
    expect(planShadowDispatch(state({ lastPrimaryAt: 10 }), 11, policy)).toEqual({ kind: "wait", ms: 2, expire: 0 });
  });

  it("runs right after a reply only when the traffic's gaps are long enough for the shadow", () => {
    // Polling every ~4 ms: quiet p10 3.2 ms ≥ max(2 ms, 3 × 0.5 ms).
    expect(planShadowDispatch(state({ lastPrimaryAt: 10, quietP10Ms: 3.2, shadowMs: 0.5 }), 10, policy).kind).toBe(
      "run",
    );
    // Back to back: 0.35 ms of think time between calls is not idle time, however fast the shadow.
    expect(planShadowDispatch(state({ lastPrimaryAt: 10, quietP10Ms: 0.35, shadowMs: 0.05 }), 10, policy).kind).toBe(
      "wait",
    );
    // Gaps long enough in general but not for this (slow) shadow.
    expect(planShadowDispatch(state({ lastPrimaryAt: 10, quietP10Ms: 3.2, shadowMs: 2 }), 10, policy).kind).toBe(
      "wait",
    );
  });

  it("the idle wait is past the traffic's usual gaps: 2 ms of quiet inside 3.3 ms gaps is not idle", () => {
    const paced = { lastPrimaryAt: 10, quietP10Ms: 3.2, quietP90Ms: 3.4, shadowMs: 2 }; // too slow for right-after
    expect(planShadowDispatch(state(paced), 12.5, policy).kind).toBe("wait");
    expect(planShadowDispatch(state(paced), 10 + 6.9, policy).kind).toBe("run");
    // Sparse traffic does not make the wait unbounded.
    expect(planShadowDispatch(state({ lastPrimaryAt: 0, quietP90Ms: 60_000 }), 1_000, policy).kind).toBe("run");
  });

  it("backs off on a busy device, up to maxBackoffMs", () => {
    const waits = [0, 1, 2, 3, 4, 5, 6, 20].map((futileLooks) => {
      const p = planShadowDispatch(state({ primaryInFlight: 1, futileLooks }), 0, policy);
      return p.kind === "wait" ? p.ms : -1;
    });
    expect(waits).toEqual([2, 4, 8, 16, 32, 64, 64, 64]);
  });

  it("expires samples older than maxAgeMs, oldest first", () => {
    expect(planShadowDispatch(state({ queuedAt: [0, 12_000, 20_000] }), 20_000, policy)).toEqual({
      kind: "run",
      expire: 1,
    });
    expect(planShadowDispatch(state({ queuedAt: [0, 1] }), 20_000, policy)).toEqual({ kind: "none", expire: 2 });
  });
});

/** A scheduler on a fake clock, with jobs whose completion the test controls. */
function harness(over: Partial<typeof policy> = {}) {
  const clock = createFakeClock(1_000);
  const s = createShadowScheduler({ clock, policy: { ...policy, ...over } });
  const log: string[] = [];
  const finish: (() => void)[] = [];
  const job = (id: string) => ({
    run: () => {
      log.push(`run ${id}`);
      return new Promise<void>((r) => finish.push(r));
    },
    dropped: () => log.push(`drop ${id}`),
  });
  const flush = () => new Promise((r) => setImmediate(r));
  return { clock, s, log, finish, job, flush };
}

describe("createShadowScheduler (fake clock)", () => {
  it("holds samples while callers are active and runs them one at a time once quiet", async () => {
    const h = harness();
    h.s.primaryStarted();
    h.s.offer(h.job("a"));
    h.s.offer(h.job("b"));
    h.clock.advance(50);
    expect(h.log).toEqual([]); // a caller is in flight the whole time
    h.s.primaryFinished();
    h.clock.advance(1);
    expect(h.log).toEqual([]);
    h.clock.advance(64); // the backed-off look lands after the 2 ms gap
    expect(h.log).toEqual(["run a"]);
    h.clock.advance(100);
    expect(h.log).toEqual(["run a"]); // b waits for a: never two shadows at once
    h.finish.shift()?.();
    await h.flush();
    expect(h.log).toEqual(["run a", "run b"]);
    h.s.close();
  });

  it("drops (and reports) samples beyond maxQueued and refuses room", () => {
    const h = harness({ maxQueued: 2 });
    h.s.primaryStarted();
    expect(h.s.hasRoom()).toBe(true);
    h.s.offer(h.job("a"));
    h.s.offer(h.job("b"));
    expect(h.s.hasRoom()).toBe(false);
    h.s.offer(h.job("c"));
    expect(h.log).toEqual(["drop c"]);
    expect(h.s.queued()).toBe(2);
    h.s.close();
    expect(h.log).toEqual(["drop c", "drop a", "drop b"]); // close drops what is left, once each
  });

  it("drops samples that waited longer than maxAgeMs instead of running them", () => {
    const h = harness({ maxAgeMs: 500 });
    h.s.primaryStarted();
    h.s.offer(h.job("old"));
    h.clock.advance(600);
    h.s.primaryFinished();
    expect(h.log).toEqual(["drop old"]);
    h.s.close();
  });

  it("learns the traffic's gaps: with long gaps a sample runs right after the reply", async () => {
    const h = harness();
    // One shadow run to learn its duration (0.5 ms), in idle time.
    h.s.offer(h.job("warm"));
    h.clock.advance(2);
    h.clock.advance(0.5);
    h.finish.shift()?.();
    await h.flush();
    // An app calling every 5 ms, 1 ms per call: 4 ms quiet periods.
    for (let i = 0; i < 20; i++) {
      h.s.primaryStarted();
      h.clock.advance(1);
      h.s.primaryFinished();
      h.clock.advance(4);
    }
    h.s.primaryStarted();
    h.clock.advance(1);
    h.s.primaryFinished();
    h.s.offer(h.job("now"));
    expect(h.log).toEqual(["run warm", "run now"]); // no idle-gap wait
    h.s.close();
  });

  /** A scheduler on a fake clock that records when its timer fires, with back-to-back callers. */
  function recordingScheduler() {
    const clock = createFakeClock(0);
    const fired: number[] = [];
    const recording = {
      now: clock.now,
      setTimeout: (fn: () => void, ms: number) =>
        clock.setTimeout(() => {
          fired.push(clock.now());
          fn();
        }, ms),
    };
    const s = createShadowScheduler({ clock: recording, policy });
    const runs: string[] = [];
    const job = (id: string) => ({ run: async () => void runs.push(id), dropped: () => runs.push(`drop ${id}`) });
    /** `ms` of back-to-back calls, 1 ms each: a caller is in flight whenever a look fires. */
    const busy = (ms: number) => {
      for (let t = 0; t < ms; t++) {
        s.primaryStarted();
        clock.advance(1);
        s.primaryFinished();
      }
    };
    const settle = () => new Promise((r) => setImmediate(r));
    return { clock, fired, s, runs, job, busy, settle };
  }

  it("remembers a busy device across bursts: the next burst is not looked at every 2 ms again", async () => {
    const { clock, fired, s, runs, job, busy, settle } = recordingScheduler();
    // Burst 1: the looks back off from 2 ms (2, 4, 8, 16, 32 apart).
    s.offer(job("a"));
    busy(100);
    expect(fired.map((t, i) => t - (fired[i - 1] ?? 0))).toEqual([2, 4, 8, 16, 32]);
    clock.advance(64); // quiet for a whole wait: the next look finds the device idle and runs the sample
    await settle();
    expect(runs).toEqual(["a"]);
    // Burst 2: the first look is half the last wait (32 ms), not 2 ms.
    const before = fired.length;
    s.offer(job("b"));
    busy(100);
    const start = clock.now() - 100;
    expect(fired.slice(before).map((t) => t - start)).toEqual([32, 96]);
    s.close();
    expect(runs).toEqual(["a", "drop b"]);
  });

  it("a look that lands just after a burst does not shorten the next burst's wait", async () => {
    const { clock, fired, s, runs, job, busy, settle } = recordingScheduler();
    s.offer(job("a"));
    busy(100); // looks at 2, 6, 14, 30, 62: the wait is at its 64 ms cap, the next look at 126
    for (let t = 100; t < 130; t++) clock.advance(1); // quiet since 100: the look at 126 finds 26 ms of quiet
    await settle();
    expect(runs).toEqual(["a"]);
    expect(fired.at(-1)).toBe(126);
    // 26 ms of quiet is less than the 64 ms wait: no evidence the device got less busy.
    const before = fired.length;
    const start = clock.now();
    s.offer(job("b"));
    busy(100);
    expect(fired.slice(before).map((t) => t - start)).toEqual([64]);
    s.close();
  });

  it("keeps at most one timer and none when the queue is empty", () => {
    const clock = createFakeClock(0);
    let armed = 0;
    const counting = {
      now: clock.now,
      setTimeout: (fn: () => void, ms: number) => {
        armed++;
        return clock.setTimeout(fn, ms);
      },
    };
    const s = createShadowScheduler({ clock: counting, policy });
    for (let i = 0; i < 100; i++) {
      s.primaryStarted();
      s.primaryFinished();
    }
    expect(armed).toBe(0);
    s.primaryStarted();
    s.offer({ run: async () => undefined, dropped: () => undefined });
    for (let i = 0; i < 100; i++) {
      s.primaryFinished();
      s.primaryStarted();
    }
    expect(armed).toBe(1); // caller activity never re-arms; only a firing timer does
    s.close();
  });
});
