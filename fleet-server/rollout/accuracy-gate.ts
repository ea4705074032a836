/**
 * The accuracy gate of a rollout stage (issue 22, "Accuracy gates with a real test"): is the
 * candidate's accuracy, measured from ground-truth feedback the devices joined to its predictions,
 * not worse than the baseline's by more than a margin δ?
 *
 * The test (docs/operations.md, "Accuracy gate"): a one-sided non-inferiority test of two
 * proportions. H0: p_candidate − p_baseline ≤ −δ; H1: p_candidate − p_baseline > −δ. The estimate of
 * the difference and its interval use the Agresti–Caffo adjustment (one success and one failure added
 * to each arm), whose coverage stays near nominal for accuracies close to 1 and small samples, where
 * the plain Wald interval is too narrow (and degenerate at 0 % or 100 %). The candidate passes when
 * the one-sided lower bound at the stated confidence lies above −δ.
 *
 * It is a fixed-sample test with one look: the planner decides once, at the first evaluation where
 * both arms hold `minSamples` joined predictions, and the rollout keeps that verdict for the stage
 * (EngineState.accuracy). Looking again as counts grow and stopping at the first "pass" would
 * inflate the false-pass rate well past 1 − confidence. "Not shown non-inferior" at the look stops
 * the rollout, like any breached gate; too few samples by `maxWaitSeconds` after the soak started
 * is its own outcome ("insufficient"), never a pass.
 *
 * Pure: no clock, no I/O.
 */

export interface FeedbackCounts {
  /** Joined (prediction, label) pairs. */
  joined: number;
  correct: number;
}

export interface AccuracyGateConfig {
  /** δ, in percentage points of accuracy. */
  maxDropPercent: number;
  /** One-sided confidence of the decision, e.g. 0.95. */
  confidence: number;
  /** Joined samples each arm needs before the one look. */
  minSamples: number;
  /** After the stage's soak started, how long to wait for `minSamples` before "insufficient". */
  maxWaitSeconds: number;
}

export type AccuracyVerdict = "pass" | "fail" | "insufficient";

export interface AccuracyEstimate {
  candidate: { n: number; accuracy: number | null };
  baseline: { n: number; accuracy: number | null };
  /** Adjusted difference candidate − baseline, in percentage points. */
  differencePercent: number | null;
  /** One-sided lower bound of the difference at `confidence`, in percentage points. */
  lowerPercent: number | null;
  /** The symmetric upper bound, shown beside it. */
  upperPercent: number | null;
}

export interface AccuracyDecision extends AccuracyEstimate {
  verdict: AccuracyVerdict;
  detail: string;
}

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239,
  ];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (
      (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
      ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1)
    );
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

const pct = (x: number) => Math.round(x * 10000) / 100;

/** The Agresti–Caffo estimate and one-sided bounds, whatever the sample sizes. */
export function estimateAccuracy(
  candidate: FeedbackCounts,
  baseline: FeedbackCounts,
  confidence: number,
): AccuracyEstimate {
  const acc = (c: FeedbackCounts) => (c.joined > 0 ? c.correct / c.joined : null);
  const out: AccuracyEstimate = {
    candidate: { n: candidate.joined, accuracy: acc(candidate) },
    baseline: { n: baseline.joined, accuracy: acc(baseline) },
    differencePercent: null,
    lowerPercent: null,
    upperPercent: null,
  };
  if (candidate.joined === 0 || baseline.joined === 0) return out;
  const adj = (c: FeedbackCounts) => {
    const n = c.joined + 2;
    const p = (c.correct + 1) / n;
    return { p, v: (p * (1 - p)) / n };
  };
  const pc = adj(candidate);
  const pb = adj(baseline);
  const diff = pc.p - pb.p;
  const half = normalQuantile(confidence) * Math.sqrt(pc.v + pb.v);
  return { ...out, differencePercent: pct(diff), lowerPercent: pct(diff - half), upperPercent: pct(diff + half) };
}

/**
 * The decision at this evaluation: null while waiting (fewer than `minSamples` in an arm and the
 * wait not over), else the verdict to keep for the stage. `waitedSeconds`: since the soak started
 * (null before it starts: no deadline yet).
 */
export function decideAccuracy(
  gate: AccuracyGateConfig,
  candidate: FeedbackCounts,
  baseline: FeedbackCounts,
  waitedSeconds: number | null,
): AccuracyDecision | null {
  const est = estimateAccuracy(candidate, baseline, gate.confidence);
  const counts = `candidate n=${candidate.joined}, baseline n=${baseline.joined}`;
  if (candidate.joined < gate.minSamples || baseline.joined < gate.minSamples) {
    if (waitedSeconds === null || waitedSeconds < gate.maxWaitSeconds) return null;
    return {
      ...est,
      verdict: "insufficient",
      detail: `accuracy: fewer than ${gate.minSamples} joined samples per arm after ${gate.maxWaitSeconds}s (${counts})`,
    };
  }
  const lower = est.lowerPercent!;
  const shown = lower > -gate.maxDropPercent;
  const level = `${Math.round(gate.confidence * 1000) / 10}%`;
  return {
    ...est,
    verdict: shown ? "pass" : "fail",
    detail: shown
      ? `accuracy: candidate not worse than baseline by ${gate.maxDropPercent} points (lower ${level} bound ${lower} points; ${counts})`
      : `accuracy: candidate not shown within ${gate.maxDropPercent} points of baseline (difference ${est.differencePercent}, lower ${level} bound ${lower} points; ${counts})`,
  };
}
