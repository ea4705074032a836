import { describe, expect, it } from "vitest";
import {
  type AccuracyGateConfig,
  decideAccuracy,
  estimateAccuracy,
  type FeedbackCounts,
  normalQuantile,
} from "../../../fleet-server/rollout/accuracy-gate.js";
import { seededRandom } from "../../../shared/seeded-random.js";

/** n joined predictions of a model that is right with probability p. */
const draw = (r: () => number, n: number, p: number): FeedbackCounts => {
  let correct = 0;
  for (let i = 0; i < n; i++) if (r() < p) correct++;
  return { joined: n, correct };
};

const GATE: AccuracyGateConfig = { maxDropPercent: 3, confidence: 0.95, minSamples: 3000, maxWaitSeconds: 3600 };

/** The verdicts over `seeds` simulated stages, each with `n` joined samples per arm. */
function simulate(seeds: number, n: number, pBaseline: number, pCandidate: number) {
  const verdicts = { pass: 0, fail: 0, insufficient: 0 };
  for (let s = 1; s <= seeds; s++) {
    const r = seededRandom(s);
    const d = decideAccuracy(GATE, draw(r, n, pCandidate), draw(r, n, pBaseline), 0);
    verdicts[d!.verdict]++;
  }
  return verdicts;
}

describe("accuracy gate: one-sided non-inferiority test of two proportions (issue 22)", () => {
  it("normal quantiles match the tables", () => {
    expect(normalQuantile(0.5)).toBeCloseTo(0, 9);
    expect(normalQuantile(0.95)).toBeCloseTo(1.644854, 5);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.999)).toBeCloseTo(3.090232, 5);
    expect(normalQuantile(0.01)).toBeCloseTo(-2.326348, 5);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });

  it("a candidate exactly at the margin passes at most at the nominal level (false passes ≤ 5 % + sampling slack)", () => {
    // Truth: 3 points worse, the largest drop H0 still contains. 1,000 stages: the 95 % one-sided
    // test lets through about 50; 80 is more than 4 standard errors above the nominal 50.
    const v = simulate(1000, 3000, 0.9, 0.87);
    expect(v.pass).toBeLessThanOrEqual(80);
    expect(v.pass + v.fail).toBe(1000);
  });

  it("an equal candidate passes (power at n = 3,000 per arm, δ = 3 points)", () => {
    const v = simulate(400, 3000, 0.9, 0.9);
    // Power here is about 0.99 (δ / SE ≈ 3.9 against z = 1.64): at most a handful of wrong stops.
    expect(v.fail).toBeLessThanOrEqual(12);
  });

  it("a clearly worse candidate is stopped every time", () => {
    expect(simulate(200, 3000, 0.9, 0.8)).toEqual({ pass: 0, fail: 200, insufficient: 0 });
  });

  it("waits below the sample size, and says 'insufficient' (not pass) once the wait is over", () => {
    const few = { joined: 100, correct: 95 };
    const many = { joined: 5000, correct: 4500 };
    expect(decideAccuracy(GATE, few, many, null)).toBeNull();
    expect(decideAccuracy(GATE, few, many, 3599)).toBeNull();
    const d = decideAccuracy(GATE, few, many, 3600)!;
    expect(d.verdict).toBe("insufficient");
    expect(d.detail).toContain("candidate n=100, baseline n=5000");
  });

  it("estimates by hand: Agresti–Caffo difference and bound", () => {
    // Candidate 90/100 → (91/102), baseline 180/200 → (181/202).
    const e = estimateAccuracy({ joined: 100, correct: 90 }, { joined: 200, correct: 180 }, 0.95);
    const pc = 91 / 102;
    const pb = 181 / 202;
    const se = Math.sqrt((pc * (1 - pc)) / 102 + (pb * (1 - pb)) / 202);
    expect(e.differencePercent).toBeCloseTo((pc - pb) * 100, 1);
    expect(e.lowerPercent).toBeCloseTo((pc - pb - 1.644854 * se) * 100, 1);
    expect(e.candidate).toEqual({ n: 100, accuracy: 0.9 });
    // Degenerate arms (all right) still give a finite interval.
    const all = estimateAccuracy({ joined: 50, correct: 50 }, { joined: 50, correct: 50 }, 0.95);
    expect(Number.isFinite(all.lowerPercent)).toBe(true);
    expect(estimateAccuracy({ joined: 0, correct: 0 }, { joined: 5, correct: 5 }, 0.95).lowerPercent).toBeNull();
  });
});
