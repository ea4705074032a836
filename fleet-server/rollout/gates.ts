import { type HealthSummary, MIN_LATENCY_PAIRS, type ProbationReport } from "../../shared/schemas/device-state.js";
import {
  type AccuracyDecision,
  type AccuracyEstimate,
  decideAccuracy,
  estimateAccuracy,
  type FeedbackCounts,
} from "./accuracy-gate.js";
import type { Gates } from "./definition.js";

/** One device as the gates see it: its sticky outcome and, when reported, its probation numbers. */
export interface GateInput {
  outcome: "passed" | "failed" | null;
  probation: ProbationReport | null;
  /** Joined ground-truth counts of the candidate and of the version before it (issue 22). */
  feedback?: { candidate: FeedbackCounts; baseline: FeedbackCounts } | undefined;
}

/** What the accuracy gate knows beyond the devices: its decision so far and the time waited. */
export interface AccuracyContext {
  /** The stage's decision, once made (EngineState.accuracy): a fixed-sample test looks once. */
  decided: AccuracyDecision | null;
  /** Seconds since the stage's soak started; null before it starts. */
  waitedSeconds: number | null;
}

export type AccuracyGateView = (AccuracyDecision | (AccuracyEstimate & { verdict: "waiting"; detail: string })) & {
  /** False when this evaluation made the decision (the planner persists it). */
  decided: boolean;
};

export interface GateEvaluation {
  /** Devices with a known outcome (passed or failed). */
  executed: number;
  failed: number;
  failedPercent: number | null;
  /**
   * Median per-device latency ratio, candidate over previous version. A device's paired ratio
   * (back-to-back calibration runs, issue 20 §6) when it reports one from enough pairs, else its
   * candidate/baseline p95 ratio over devices with enough samples.
   */
  p95LatencyRatio: number | null;
  latencyDevices: number;
  /** How many of `latencyDevices` contributed a paired ratio (like with like) rather than p95s. */
  pairedLatencyDevices: number;
  /** Pooled candidate error rate, over devices with enough samples. */
  errorRatePercent: number | null;
  errorDevices: number;
  shadowAgreementPercent: number | null;
  shadowDevices: number;
  /** The accuracy gate (issue 22), when the stage has one. */
  accuracy: AccuracyGateView | null;
  /** A gate is tripped: the rollout must stop (the abort action applies). */
  breached: string | null;
  /** Every gate passes now. */
  passing: boolean;
  /** Why it is not passing yet, when neither passing nor breached. */
  waitingFor: string | null;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const enough = (h: HealthSummary | null | undefined, min: number): h is HealthSummary =>
  h !== null && h !== undefined && h.requests >= min;

/**
 * Pure gate evaluation (architecture.md §6): failures counted once per device, metric gates from the
 * devices' probation reports (candidate against the device's own baseline), each device counted
 * only with `minRequestsPerDevice` samples. Nothing trips or passes below `minDevices`.
 */
export function evaluateGates(
  gates: Gates,
  devices: readonly GateInput[],
  ctx: AccuracyContext = { decided: null, waitedSeconds: null },
): GateEvaluation {
  const executed = devices.filter((d) => d.outcome !== null).length;
  const failed = devices.filter((d) => d.outcome === "failed").length;
  const failedPercent = executed === 0 ? null : (failed / executed) * 100;
  const min = gates.minRequestsPerDevice;

  const ratios: number[] = [];
  let paired = 0;
  let errReq = 0;
  let errCount = 0;
  let errorDevices = 0;
  const agreements: number[] = [];
  for (const d of devices) {
    const p = d.probation;
    if (!p || !enough(p.candidate, min)) continue;
    errorDevices++;
    errReq += p.candidate.requests;
    errCount += p.candidate.errors;
    if (p.candidate.shadowAgreementPercent !== null) agreements.push(p.candidate.shadowAgreementPercent);
    // Like with like first (issue 20 §6): the previous version measured on the same device at the
    // same moment. A p95 from before the swap against one after it compares different loads.
    const pl = p.pairedLatency;
    if (pl && pl.ratio !== null && pl.pairs >= MIN_LATENCY_PAIRS) {
      ratios.push(pl.ratio);
      paired++;
      continue;
    }
    const base = p.baseline;
    if (enough(base, min) && base.p95Ms !== null && base.p95Ms > 0 && p.candidate.p95Ms !== null) {
      ratios.push(p.candidate.p95Ms / base.p95Ms);
    }
  }
  const p95LatencyRatio = median(ratios);
  const errorRatePercent = errReq === 0 ? null : (errCount / errReq) * 100;
  const shadowAgreementPercent =
    agreements.length === 0 ? null : agreements.reduce((a, b) => a + b, 0) / agreements.length;

  const base = {
    executed,
    failed,
    failedPercent,
    p95LatencyRatio,
    latencyDevices: ratios.length,
    pairedLatencyDevices: paired,
    errorRatePercent,
    errorDevices,
    shadowAgreementPercent,
    shadowDevices: agreements.length,
    accuracy: null as AccuracyGateView | null,
  };
  const pct = (x: number) => `${Math.round(x * 10) / 10}%`;
  const breach: string[] = [];
  const waiting: string[] = [];

  if (executed < gates.minDevices) waiting.push(`${executed}/${gates.minDevices} devices executed`);
  else if (failedPercent !== null && failedPercent > gates.maxFailedPercent) {
    breach.push(`failed ${pct(failedPercent)} of ${executed} devices > maxFailedPercent ${gates.maxFailedPercent}`);
  }
  if (gates.maxP95LatencyRatio !== undefined) {
    if (ratios.length < gates.minDevices) {
      waiting.push(`latency from ${ratios.length}/${gates.minDevices} devices with ≥${min} requests`);
    } else if (p95LatencyRatio !== null && p95LatencyRatio > gates.maxP95LatencyRatio) {
      breach.push(`p95 latency ratio ${p95LatencyRatio.toFixed(2)} > maxP95LatencyRatio ${gates.maxP95LatencyRatio}`);
    }
  }
  if (gates.maxErrorRatePercent !== undefined) {
    if (errorDevices < gates.minDevices) {
      waiting.push(`error rate from ${errorDevices}/${gates.minDevices} devices with ≥${min} requests`);
    } else if (errorRatePercent !== null && errorRatePercent > gates.maxErrorRatePercent) {
      breach.push(`error rate ${pct(errorRatePercent)} > maxErrorRatePercent ${gates.maxErrorRatePercent}`);
    }
  }
  if (gates.minShadowAgreementPercent !== undefined) {
    if (agreements.length < gates.minDevices) {
      waiting.push(`shadow agreement from ${agreements.length}/${gates.minDevices} devices`);
    } else if (shadowAgreementPercent !== null && shadowAgreementPercent < gates.minShadowAgreementPercent) {
      breach.push(
        `shadow agreement ${pct(shadowAgreementPercent)} < minShadowAgreementPercent ${gates.minShadowAgreementPercent}`,
      );
    }
  }
  if (gates.accuracy) {
    const view = accuracyView(gates.accuracy, devices, ctx);
    base.accuracy = view;
    if (view.verdict === "waiting") waiting.push(view.detail);
    else if (view.verdict !== "pass") breach.push(view.detail);
  }
  return {
    ...base,
    breached: breach.length > 0 ? breach.join("; ") : null,
    passing: breach.length === 0 && waiting.length === 0,
    waitingFor: waiting.length > 0 ? waiting.join("; ") : null,
  };
}

/** The accuracy gate over the counted devices: their counts pooled, decided once (accuracy-gate.ts). */
function accuracyView(
  gate: NonNullable<Gates["accuracy"]>,
  devices: readonly GateInput[],
  ctx: AccuracyContext,
): AccuracyGateView {
  if (ctx.decided) return { ...ctx.decided, decided: true };
  const candidate = { joined: 0, correct: 0 };
  const baseline = { joined: 0, correct: 0 };
  for (const d of devices) {
    if (!d.feedback) continue;
    candidate.joined += d.feedback.candidate.joined;
    candidate.correct += d.feedback.candidate.correct;
    baseline.joined += d.feedback.baseline.joined;
    baseline.correct += d.feedback.baseline.correct;
  }
  const decision = decideAccuracy(gate, candidate, baseline, ctx.waitedSeconds);
  if (decision) return { ...decision, decided: false };
  return {
    ...estimateAccuracy(candidate, baseline, gate.confidence),
    verdict: "waiting",
    detail: `accuracy: ${candidate.joined}/${gate.minSamples} candidate and ${baseline.joined}/${gate.minSamples} baseline joined samples`,
    decided: false,
  };
}
