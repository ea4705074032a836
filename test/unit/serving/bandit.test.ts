import { describe, expect, it } from "vitest";
import {
  type ArmReward,
  banditWeight,
  createBanditWeights,
  probabilityCandidateBetter,
  sampleBeta,
} from "../../../agent/serving/bandit.js";
import { chooseArm } from "../../../agent/serving/strategy-decisions.js";
import { seededRandom } from "../../../shared/seeded-random.js";

/**
 * A simulated A/B split run as a bandit: every request picks an arm with the current weight, its
 * label comes back at once (right with the arm's true accuracy), the weight is recomputed every
 * `every` requests (the agent: at most once a second). Returns the candidate's share per block.
 */
function simulate(seed: number, pControl: number, pCandidate: number, minShare: number, n = 3000, every = 50) {
  const random = seededRandom(seed);
  const control: ArmReward = { joined: 0, correct: 0 };
  const candidate: ArmReward = { joined: 0, correct: 0 };
  let weight = 0.5;
  const arms: string[] = [];
  const weights: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % every === 0) {
      weight = banditWeight({ minShare }, control, candidate, random, 500);
      weights.push(weight);
    }
    const arm = chooseArm(weight, undefined, random);
    arms.push(arm);
    const r = arm === "candidate" ? candidate : control;
    r.joined++;
    if (random() < (arm === "candidate" ? pCandidate : pControl)) r.correct++;
  }
  const share = (from: number, to: number) =>
    arms.slice(from, to).filter((a) => a === "candidate").length / (to - from);
  return { lastShare: share(n - 1000, n), weights, control, candidate };
}

describe("bandit A/B: Thompson sampling on the feedback reward (issue 22)", () => {
  it("Beta samples have the right mean and stay in (0, 1)", () => {
    const random = seededRandom(1);
    for (const [a, b] of [
      [1, 1],
      [3, 7],
      [0.5, 0.5],
      [200, 20],
    ] as const) {
      let sum = 0;
      for (let i = 0; i < 8000; i++) {
        const x = sampleBeta(a, b, random);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(1);
        sum += x;
      }
      expect(Math.abs(sum / 8000 - a / (a + b))).toBeLessThan(0.01);
    }
  });

  it("P(candidate better) is ½ for equal evidence, near 1 or 0 when one arm is clearly better", () => {
    const random = seededRandom(2);
    expect(
      probabilityCandidateBetter({ joined: 100, correct: 80 }, { joined: 100, correct: 80 }, random, 20_000),
    ).toBeCloseTo(0.5, 1);
    expect(
      probabilityCandidateBetter({ joined: 500, correct: 300 }, { joined: 500, correct: 450 }, random),
    ).toBeGreaterThan(0.99);
    expect(
      probabilityCandidateBetter({ joined: 500, correct: 450 }, { joined: 500, correct: 300 }, random),
    ).toBeLessThan(0.01);
  });

  it("moves traffic to the better candidate and keeps the control's floor, for every seed", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = simulate(seed, 0.7, 0.9, 0.1);
      // Clipped at 1 − floor = 0.9: the last 1,000 requests go ~90 % to the candidate.
      expect(s.lastShare, `seed ${seed}`).toBeGreaterThan(0.85);
      expect(Math.max(...s.weights), `seed ${seed}`).toBeLessThanOrEqual(0.9);
      // The floor keeps measuring the control: it gathered hundreds of labels.
      expect(s.control.joined, `seed ${seed}`).toBeGreaterThan(200);
    }
  });

  it("moves traffic away from a worse candidate, which keeps its floor", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = simulate(seed, 0.9, 0.6, 0.05);
      expect(s.lastShare, `seed ${seed}`).toBeLessThan(0.1);
      expect(Math.min(...s.weights), `seed ${seed}`).toBeGreaterThanOrEqual(0.05);
    }
  });

  it("recomputes at most every refreshMs, from the rewards then", () => {
    let now = 0;
    let calls = 0;
    const w = createBanditWeights({
      now: () => now,
      random: seededRandom(3),
      refreshMs: 1000,
      rewards: () => {
        calls++;
        return { control: { joined: 400, correct: 100 }, candidate: { joined: 400, correct: 380 } };
      },
    });
    expect(w.last("m")).toBeNull();
    const first = w.weight("m", { minShare: 0.2 });
    expect(first).toBe(0.8);
    now = 999;
    w.weight("m", { minShare: 0.2 });
    expect(calls).toBe(1);
    now = 1000;
    w.weight("m", { minShare: 0.2 });
    expect(calls).toBe(2);
    w.forget("m");
    expect(w.last("m")).toBeNull();
  });
});
