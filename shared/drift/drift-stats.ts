/**
 * Drift statistics shared by the agent (rolling windows) and the fleet server (fleet-wide
 * aggregates). Pure functions over binned histograms; no I/O.
 */

/** Smoothing for empty bins: PSI is undefined when a proportion is 0 (log of 0). */
export const PSI_EPSILON = 1e-4;

/**
 * Bin of `x` on strictly increasing `edges` (k+1 edges → k bins). Tails are open: below the
 * first edge → bin 0, at or above the last edge → bin k-1. Bins are [e_i, e_{i+1}).
 * Returns -1 for NaN (not counted: non-finite outputs are tracked separately).
 */
export function binIndex(edges: readonly number[], x: number): number {
  if (Number.isNaN(x)) return -1;
  const k = edges.length - 1;
  if (x < edges[1]!) return 0;
  if (x >= edges[k - 1]!) return k - 1;
  // Binary search for the last edge <= x among edges[1..k-1].
  let lo = 1;
  let hi = k - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (edges[mid]! <= x) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Counts → proportions summing to 1 (all-zero input → all zeros). */
export function proportions(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return total > 0 ? counts.map((c) => c / total) : counts.map(() => 0);
}

/**
 * Population Stability Index: Σ (a_i − e_i) · ln(a_i / e_i) over bins, with `PSI_EPSILON`
 * floors. Common reading: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift.
 */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  if (expected.length !== actual.length) throw new RangeError("psi: histograms differ in bin count");
  const e = proportions(expected);
  const a = proportions(actual);
  let sum = 0;
  for (let i = 0; i < e.length; i++) {
    const ei = Math.max(e[i]!, PSI_EPSILON);
    const ai = Math.max(a[i]!, PSI_EPSILON);
    sum += (ai - ei) * Math.log(ai / ei);
  }
  return sum;
}

/**
 * Two-sample Kolmogorov–Smirnov statistic evaluated on the bin grid: max |F_e − F_a| over the
 * bin boundaries. Exact for data that is already binned; a lower bound of the continuous KS
 * statistic otherwise (the baseline ships only histograms, not raw samples).
 */
export function ksBinned(expected: readonly number[], actual: readonly number[]): number {
  if (expected.length !== actual.length) throw new RangeError("ks: histograms differ in bin count");
  const e = proportions(expected);
  const a = proportions(actual);
  let fe = 0;
  let fa = 0;
  let d = 0;
  for (let i = 0; i < e.length; i++) {
    fe += e[i]!;
    fa += a[i]!;
    d = Math.max(d, Math.abs(fe - fa));
  }
  return Math.min(1, d);
}

/** Element-wise sum of equally long count vectors (merging device windows on the server). */
export function mergeCounts(all: readonly (readonly number[])[]): number[] {
  const out = new Array<number>(all[0]?.length ?? 0).fill(0);
  for (const c of all) {
    if (c.length !== out.length) throw new RangeError("mergeCounts: histograms differ in bin count");
    for (let i = 0; i < c.length; i++) out[i]! += c[i]!;
  }
  return out;
}
