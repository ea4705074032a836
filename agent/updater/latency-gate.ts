import { MIN_LATENCY_PAIRS } from "../../shared/schemas/device-state.js";
import { percentile } from "./health-summary.js";

/**
 * The probation's latency gate on paired measurements (issue 20 §6). A baseline measured before the
 * swap and a candidate measured after it compare two different devices when the load changes in
 * between (another process, thermal throttling): a healthy int8 candidate was reverted for a
 * "p95 272 ms > 3 x 55 ms" that was only the load. So during probation the agent runs the candidate
 * and the previous version back to back on the same golden sample (order alternating, see
 * probation-monitor.ts) and judges the *ratio within each pair*: both halves saw the same machine.
 */

/** One calibration run of each version on the same input, taken back to back (model execution ms). */
export interface LatencyPair {
  candidateMs: number;
  previousMs: number;
}

export interface PairedGateLimits {
  /** Fewer pairs than this say nothing: the gate waits for more (or stays silent if it cannot get them). */
  minPairs: number;
  /**
   * The noise margin, as a one-sided confidence level on the mean log ratio (z score; 1.645 = 95 %):
   * the candidate fails only when even the lower confidence bound of its paired ratio exceeds the
   * policy's. Pairs share the machine's state but not its every millisecond: on a loaded 2-core VM
   * the median of 15 pairs of equal-speed versions ranged from 0.8 to 1.5, so a fixed margin either
   * fails healthy candidates or misses slow ones; a bound from the measured spread does neither.
   */
  z: number;
  /** Share of the log ratios trimmed at each end before the mean and spread (a preempted half is an outlier). */
  trim: number;
  /** A regression must also be worth this many ms at the median (tiny models run in microseconds). */
  floorMs: number;
}
export const DEFAULT_PAIRED_LIMITS: PairedGateLimits = { minPairs: MIN_LATENCY_PAIRS, z: 1.645, trim: 0.1, floorMs: 1 };

export interface PairedLatency {
  pairs: number;
  /** Geometric mean of candidate/previous over the pairs (trimmed). */
  ratio: number | null;
  /** Lower confidence bound of that ratio: the statistic judged. */
  ratioLow: number | null;
  candidateP50Ms: number | null;
  previousP50Ms: number | null;
  /** p95 of each side over the same pairs (reported; the pairs' tails saw the same conditions). */
  candidateP95Ms: number | null;
  previousP95Ms: number | null;
}

export type PairedVerdict =
  | { verdict: "inconclusive"; figures: PairedLatency }
  | { verdict: "ok"; figures: PairedLatency }
  | { verdict: "regressed"; figures: PairedLatency; reason: string };

const round3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);

/** Trimmed mean and its lower confidence bound of the log ratios; null for no pairs. Pure. */
function logRatioBound(pairs: readonly LatencyPair[], limits: PairedGateLimits): { mean: number; low: number } | null {
  // A run can report 0 ms on a coarse clock; a tiny epsilon keeps the ratio finite without moving it.
  const eps = 1e-3;
  const logs = pairs.map((p) => Math.log((p.candidateMs + eps) / (p.previousMs + eps))).sort((a, b) => a - b);
  const cut = Math.floor(logs.length * limits.trim);
  const kept = logs.slice(cut, logs.length - cut);
  if (kept.length === 0) return null;
  const mean = kept.reduce((a, b) => a + b, 0) / kept.length;
  const variance = kept.length > 1 ? kept.reduce((a, b) => a + (b - mean) ** 2, 0) / (kept.length - 1) : 0;
  return { mean, low: mean - (limits.z * Math.sqrt(variance)) / Math.sqrt(kept.length) };
}

/** The figures of a set of pairs. Pure. */
export function pairedFigures(pairs: readonly LatencyPair[], limits = DEFAULT_PAIRED_LIMITS): PairedLatency {
  const bound = logRatioBound(pairs, limits);
  const c = pairs.map((p) => p.candidateMs);
  const v = pairs.map((p) => p.previousMs);
  return {
    pairs: pairs.length,
    ratio: bound ? round3(Math.exp(bound.mean)) : null,
    ratioLow: bound ? round3(Math.exp(bound.low)) : null,
    candidateP50Ms: round3(percentile(c, 50)),
    previousP50Ms: round3(percentile(v, 50)),
    candidateP95Ms: round3(percentile(c, 95)),
    previousP95Ms: round3(percentile(v, 95)),
  };
}

/**
 * Judges paired measurements against the health policy's `maxP95LatencyRatio`: regressed when the
 * lower confidence bound of the paired ratio exceeds it, and the median paired difference is worth
 * the floor. A run preempted on one side is trimmed or widens the bound; equal-speed versions stay
 * below it under noise, while a version several times slower is above it. Without evidence of a
 * regression the candidate passes: a false revert condemns a good bundle for good. Pure.
 */
export function judgePairedLatency(
  pairs: readonly LatencyPair[],
  maxRatio: number,
  limits: PairedGateLimits = DEFAULT_PAIRED_LIMITS,
): PairedVerdict {
  const figures = pairedFigures(pairs, limits);
  if (pairs.length < limits.minPairs || figures.ratioLow === null) return { verdict: "inconclusive", figures };
  // The floor also on paired figures: medians of each side taken apart mix load levels.
  const worse = percentile(
    pairs.map((p) => p.candidateMs - p.previousMs),
    50,
  )!;
  if (figures.ratioLow > maxRatio && worse > limits.floorMs) {
    return {
      verdict: "regressed",
      figures,
      reason:
        `candidate vs previous on ${figures.pairs} back-to-back runs: ratio ${figures.ratio} ` +
        `(lower bound ${figures.ratioLow}) > ${maxRatio}, median +${round3(worse)} ms per run`,
    };
  }
  return { verdict: "ok", figures };
}

/**
 * How long to wait before the next calibration pair so that calibration takes at most `share` of
 * the device's time (the pair just took `lastPairMs`), and never less than `minGapMs`. Pure.
 */
export function calibrationGapMs(lastPairMs: number, share: number, minGapMs: number): number {
  const gap = (lastPairMs * (1 - share)) / share;
  return Math.max(minGapMs, Math.ceil(gap));
}
