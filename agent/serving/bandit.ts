/**
 * Bandit A/B (issue 22): the candidate's share of an A/B split follows the feedback reward instead
 * of a fixed weight. Thompson sampling on a Beta–Bernoulli model per arm (reward = a joined label
 * was right; prior Beta(1, 1)): sending each request to the arm whose sampled accuracy is higher
 * sends it to the candidate with probability P(θ_candidate > θ_control). We compute that
 * probability (Monte Carlo over the two posteriors) and use it as the split weight, which keeps
 * sticky A/B keys working (chooseArm hashes a key against the weight) and gives unkeyed requests
 * exactly Thompson sampling's distribution. The weight is clipped to [minShare, 1 − minShare]: each
 * arm keeps a floor of traffic, so the reward of the arm that looks worse keeps being measured and a
 * late change is still seen.
 *
 * Pure functions take their randomness as an argument; `createBanditWeights` caches the weight per
 * model and recomputes it at most every `refreshMs` (the posteriors move by one label at a time;
 * recomputing per request would cost ~0.2 ms each).
 */

export interface BanditPolicy {
  /** Each arm's minimum share of requests, 0 ≤ minShare ≤ 0.5. */
  minShare: number;
}

export interface ArmReward {
  /** Joined labels of this arm's predictions, and how many were right. */
  joined: number;
  correct: number;
}

/** A standard normal sample (Box–Muller). */
function normal(random: () => number): number {
  let u = 0;
  while (u === 0) u = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** A Gamma(k, 1) sample, k > 0 (Marsaglia–Tsang; k < 1 through the k + 1 boost). */
export function sampleGamma(k: number, random: () => number): number {
  if (k < 1) return sampleGamma(k + 1, random) * random() ** (1 / k);
  const d = k - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(random);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = random();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(a, b) sample. */
export function sampleBeta(a: number, b: number, random: () => number): number {
  const x = sampleGamma(a, random);
  return x / (x + sampleGamma(b, random));
}

/** P(θ_candidate > θ_control) under Beta(1 + right, 1 + wrong) posteriors, by `draws` paired samples. */
export function probabilityCandidateBetter(
  control: ArmReward,
  candidate: ArmReward,
  random: () => number,
  draws = 2000,
): number {
  const post = (r: ArmReward) => [1 + r.correct, 1 + Math.max(0, r.joined - r.correct)] as const;
  const [ca, cb] = post(control);
  const [ka, kb] = post(candidate);
  let wins = 0;
  for (let i = 0; i < draws; i++) if (sampleBeta(ka, kb, random) > sampleBeta(ca, cb, random)) wins++;
  return wins / draws;
}

/** The candidate's share: Thompson sampling's probability, clipped to each arm's floor. Pure given `random`. */
export function banditWeight(
  policy: BanditPolicy,
  control: ArmReward,
  candidate: ArmReward,
  random: () => number,
  draws = 2000,
): number {
  const floor = Math.min(0.5, Math.max(0, policy.minShare));
  const p = probabilityCandidateBetter(control, candidate, random, draws);
  return Math.min(1 - floor, Math.max(floor, p));
}

export interface BanditWeights {
  /** The candidate's current share for `model` (recomputed at most every `refreshMs`). */
  weight(model: string, policy: BanditPolicy): number;
  /** The last weight computed per model (for `reported`), without recomputing. */
  last(model: string): number | null;
  forget(model: string): void;
}

export function createBanditWeights(deps: {
  /** Rewards of the two arms of `model`'s A/B split as the feedback window counted them. */
  rewards: (model: string) => { control: ArmReward; candidate: ArmReward };
  now: () => number;
  random: () => number;
  refreshMs?: number;
}): BanditWeights {
  const refreshMs = deps.refreshMs ?? 1000;
  const cache = new Map<string, { at: number; weight: number }>();
  return {
    weight(model, policy) {
      const now = deps.now();
      const hit = cache.get(model);
      if (hit && now - hit.at < refreshMs) return hit.weight;
      const r = deps.rewards(model);
      const weight = banditWeight(policy, r.control, r.candidate, deps.random);
      cache.set(model, { at: now, weight });
      return weight;
    },
    last: (model) => cache.get(model)?.weight ?? null,
    forget: (model) => void cache.delete(model),
  };
}
