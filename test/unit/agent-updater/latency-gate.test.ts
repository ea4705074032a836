import { describe, expect, it } from "vitest";
import { type HealthSample, summarize } from "../../../agent/updater/health-summary.js";
import {
  calibrationGapMs,
  DEFAULT_PAIRED_LIMITS,
  judgePairedLatency,
  type LatencyPair,
} from "../../../agent/updater/latency-gate.js";
import { judgeProbation, type ProbationStats } from "../../../agent/updater/verdicts.js";
import { type HealthPolicy, HealthPolicySchema } from "../../../shared/schemas/desired-state.js";
import type { HealthSummary } from "../../../shared/schemas/device-state.js";
import { seededRandom } from "../../../shared/seeded-random.js";

/**
 * Issue 20 §6: the latency gate on paired measurements. The scenario of the issue, in numbers: an
 * idle baseline of 55 ms, a healthy candidate measured while other work loads the CPU (~250 ms), and
 * the previous version measured back to back with it under the same load.
 */
const policy = (over: Partial<HealthPolicy> = {}): HealthPolicy => HealthPolicySchema.parse(over);
const MB = 2 ** 20;

/** `n` pairs: a load factor per pair shared by both halves (what pairing buys), independent jitter on each. */
function pairs(n: number, candidateBaseMs: number, previousBaseMs: number, seed = 1, load = (_i: number) => 1) {
  const r = seededRandom(seed);
  // Each half on its own: 0.75x to 1.35x, and one run in twenty preempted (4x) on either side.
  const jitter = () => 0.75 + r() * 0.6;
  return Array.from({ length: n }, (_, i): LatencyPair => {
    const l = load(i);
    const spikeC = r() < 0.05 ? 4 : 1;
    const spikeP = r() < 0.05 ? 4 : 1;
    return { candidateMs: candidateBaseMs * l * jitter() * spikeC, previousMs: previousBaseMs * l * jitter() * spikeP };
  });
}
const loadFromMidway = (n: number) => (i: number) => (i < n / 2 ? 1 : 5);

describe("judgePairedLatency (pure)", () => {
  it("an equal-speed candidate passes whatever the load does, over many seeds", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const v = judgePairedLatency(pairs(40, 55, 55, seed, loadFromMidway(40)), 3);
      expect(v.verdict, `seed ${seed}`).toBe("ok");
      // A tight policy (1.5) does not fail equal speed either: the noise margin holds.
      expect(judgePairedLatency(pairs(15, 55, 55, seed, loadFromMidway(15)), 1.5).verdict, `seed ${seed}`).toBe("ok");
    }
  });

  it("a 3.3x slower candidate fails a ratio of 2 on every seed, with the load or without", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const v = judgePairedLatency(pairs(20, 181.5, 55, seed, loadFromMidway(20)), 2);
      expect(v.verdict, `seed ${seed}`).toBe("regressed");
      expect(judgePairedLatency(pairs(20, 181.5, 55, seed), 2).verdict).toBe("regressed");
    }
    const v = judgePairedLatency(pairs(20, 181.5, 55), 2);
    expect(v.verdict === "regressed" && v.reason).toMatch(
      /20 back-to-back runs: ratio [34]\.\d+ \(lower bound [23]\.\d+\) > 2, median \+\d/,
    );
  });

  it("is inconclusive below minPairs; a regression must also be worth the floor in ms", () => {
    expect(judgePairedLatency(pairs(DEFAULT_PAIRED_LIMITS.minPairs - 1, 165, 55), 2).verdict).toBe("inconclusive");
    expect(judgePairedLatency(pairs(DEFAULT_PAIRED_LIMITS.minPairs, 165, 55), 2).verdict).toBe("regressed");
    // 10x slower, but 0.05 ms vs 0.005 ms: scheduler noise on a model that runs in microseconds.
    expect(judgePairedLatency(pairs(40, 0.05, 0.005), 2).verdict).toBe("ok");
    const f = judgePairedLatency([{ candidateMs: 0, previousMs: 0 }], 2).figures;
    expect(f.ratio).toBe(1);
  });

  it("calibration takes at most its share of the time, never more often than the minimum gap", () => {
    expect(calibrationGapMs(20, 0.1, 200)).toBe(200);
    expect(calibrationGapMs(100, 0.1, 200)).toBe(900);
    expect(calibrationGapMs(100, 0.5, 10)).toBe(100);
  });
});

describe("judgeProbation with paired measurements", () => {
  const SHA = "a".repeat(64);
  const runs = (n: number, ms: number): HealthSample[] =>
    Array.from({ length: n }, () => ({ at: 0, ok: true, computeMs: ms, nonFinite: 0, probe: false }));
  const summary = (s: HealthSample[]): HealthSummary =>
    summarize({ version: "2.0.0", sha256: SHA }, s, { hostRestarts: 0, rssBytes: 80 * MB });
  const idleBaseline = { ...summary(runs(50, 55)), version: "1.0.0" };
  const loadedCandidate = summary(runs(50, 272));
  const stats = (over: Partial<ProbationStats> = {}): ProbationStats => ({
    startedAt: 0,
    candidate: loadedCandidate,
    serving: true,
    memoryBudgetBytes: 512 * MB,
    ...over,
  });
  const p = policy({ probationSeconds: 1 });

  it("the issue's case: idle baseline 55 ms, loaded candidate 272 ms → reverted without pairs, passed with them", () => {
    expect(judgeProbation(stats(), p, idleBaseline, 5_000)).toMatchObject({
      verdict: "failed",
      code: "LATENCY_REGRESSION",
    });
    const paired = judgePairedLatency(pairs(30, 272, 250), p.maxP95LatencyRatio);
    expect(judgeProbation(stats({ paired: { verdict: paired, waitUntil: 0 } }), p, idleBaseline, 5_000)).toEqual({
      verdict: "passed",
    });
  });

  it("a paired regression fails; too few pairs wait until waitUntil, then pass on the ratio", () => {
    const slow = judgePairedLatency(pairs(30, 900, 250), p.maxP95LatencyRatio);
    expect(judgeProbation(stats({ paired: { verdict: slow, waitUntil: 0 } }), p, idleBaseline, 5_000)).toMatchObject({
      verdict: "failed",
      code: "LATENCY_REGRESSION",
    });
    const few = judgePairedLatency(pairs(3, 272, 250), p.maxP95LatencyRatio);
    const waiting = stats({ paired: { verdict: few, waitUntil: 10_000 } });
    expect(judgeProbation(waiting, p, idleBaseline, 5_000)).toEqual({ verdict: "pending" });
    expect(judgeProbation(waiting, p, idleBaseline, 10_000)).toEqual({ verdict: "passed" });
  });

  it("the absolute budget is a second check, paired or not", () => {
    const ok = judgePairedLatency(pairs(30, 272, 250), p.maxP95LatencyRatio);
    const budget = policy({ probationSeconds: 1, maxP95LatencyMs: 200 });
    expect(judgeProbation(stats({ paired: { verdict: ok, waitUntil: 0 } }), budget, idleBaseline, 5_000)).toMatchObject(
      {
        verdict: "failed",
        code: "LATENCY_REGRESSION",
        reason: "p95 272 ms > budget 200 ms",
      },
    );
    expect(
      judgeProbation(
        stats({ paired: { verdict: ok, waitUntil: 0 } }),
        policy({ probationSeconds: 1, maxP95LatencyMs: 300 }),
        idleBaseline,
        5_000,
      ).verdict,
    ).toBe("passed");
  });
});
