import type { ErrorCode } from "../../shared/errors.js";
import type { HealthPolicy } from "../../shared/schemas/desired-state.js";
import type { HealthSummary, UpdateState } from "../../shared/schemas/device-state.js";
import type { PairedVerdict } from "./latency-gate.js";

/** Pipeline steps that can be (re)started, in order (architecture.md §5). */
export const PIPELINE = ["downloading", "staging", "loading", "smoke-testing", "swapping", "probation"] as const;
export type PipelineStep = (typeof PIPELINE)[number];

export type ResumeAction =
  | { kind: "none" }
  | { kind: "run"; from: PipelineStep }
  | { kind: "revert"; code: ErrorCode; reason: string };

/**
 * What to do at startup with a model whose update was interrupted (architecture.md §5: "a restart resumes
 * where it stopped"; "a restart during probation counts against the candidate"). Pure.
 * - verifying/downloading resume the download; staging onwards restart from the bundle on disk;
 * - swapping restarts from loading (whether the swap happened is unknown after a crash, and
 *   loading + activating again is idempotent);
 * - probation: `restarts` already includes this restart.
 */
export function planResume(state: UpdateState, restarts: number, maxHostRestarts: number): ResumeAction {
  switch (state) {
    case "verifying":
    case "downloading":
      return { kind: "run", from: "downloading" };
    case "staging":
    case "loading":
    case "smoke-testing":
      return { kind: "run", from: state };
    case "swapping":
      return { kind: "run", from: "loading" };
    case "probation":
      if (restarts > maxHostRestarts) {
        return { kind: "revert", code: "HOST_CRASHED", reason: `${restarts} agent restarts during probation` };
      }
      return { kind: "run", from: "loading" };
    case "reverting":
      return { kind: "revert", code: "HOST_CRASHED", reason: "revert interrupted by a restart" };
    default:
      return { kind: "none" };
  }
}

/** What the monitor measured on the candidate so far (architecture.md §5 probation). */
export interface ProbationStats {
  /** Epoch ms when the candidate started serving. */
  startedAt: number;
  /** The candidate over the window; `hostRestarts` includes agent restarts during its probation. */
  candidate: HealthSummary;
  /** False when the candidate no longer serves its model (replaced or unloaded behind our back). */
  serving: boolean;
  /** The profile's memory budget; the candidate's host RSS must stay below it. */
  memoryBudgetBytes: number;
  /**
   * Candidate vs previous version on back-to-back calibration runs, when the previous host is warm
   * (blue-green; issue 20 §6). While inconclusive the verdict waits for pairs until `waitUntil`.
   * Absent: no previous host to pair with, and the pre-swap baseline is all there is.
   */
  paired?: { verdict: PairedVerdict; waitUntil: number };
}

/** Noise guards of the latency verdict (not in the health policy: they are about measuring, not about taste). */
export interface JudgeLimits {
  /**
   * Absolute slack added to `ratio × baseline p95`. Tiny models run in tens of microseconds, where
   * scheduler jitter alone exceeds any ratio; a regression must also be worth a millisecond.
   */
  latencyFloorMs: number;
  /** Fewer successful runs than this say nothing about a p95. */
  minLatencySamples: number;
}
export const DEFAULT_JUDGE_LIMITS: JudgeLimits = { latencyFloorMs: 1, minLatencySamples: 10 };

export type ProbationJudgement =
  | { verdict: "pending" }
  | { verdict: "passed" }
  | { verdict: "failed"; code: ErrorCode; reason: string };

/** Whether the window (duration and/or request count, architecture.md §5) has closed. Pure. */
export function windowComplete(stats: ProbationStats, policy: HealthPolicy, now: number): boolean {
  return (
    now - stats.startedAt >= policy.probationSeconds * 1000 && stats.candidate.requests >= policy.probationRequests
  );
}

/**
 * Probation verdict (architecture.md §5), pure (`now` is passed in). Order of checks:
 * 1. Conditions that fail at once, whatever the window: crashes beyond `maxHostRestarts`, any non-finite
 *    output, host RSS above the profile budget, the candidate no longer serving.
 * 2. Until the window closes: pending.
 * 3. At the close: error rate (percent of requests that failed), then the absolute p95 budget
 *    (`maxP95LatencyMs`, optional), then latency against the previous version (`maxP95LatencyRatio`):
 *    on paired runs when the previous host is warm (waiting for enough pairs), else the pre-swap
 *    baseline's p95 (skipped without a baseline or with too few samples).
 */
export function judgeProbation(
  stats: ProbationStats,
  policy: HealthPolicy,
  baseline: HealthSummary | null,
  now: number,
  limits: JudgeLimits = DEFAULT_JUDGE_LIMITS,
): ProbationJudgement {
  const c = stats.candidate;
  if (c.hostRestarts > policy.maxHostRestarts) {
    return {
      verdict: "failed",
      code: "HOST_CRASHED",
      reason: `candidate host restarted ${c.hostRestarts} times (max ${policy.maxHostRestarts})`,
    };
  }
  if (c.nonFinite > 0) {
    return { verdict: "failed", code: "NON_FINITE_OUTPUT", reason: `${c.nonFinite} responses contained NaN or Inf` };
  }
  if (c.rssBytes !== null && c.rssBytes > stats.memoryBudgetBytes) {
    const mb = (b: number) => Math.round(b / 2 ** 20);
    return {
      verdict: "failed",
      code: "MEMORY_BUDGET_EXCEEDED",
      reason: `candidate host RSS ${mb(c.rssBytes)} MB exceeds the profile budget of ${mb(stats.memoryBudgetBytes)} MB`,
    };
  }
  if (!stats.serving) return { verdict: "failed", code: "HOST_CRASHED", reason: "candidate is no longer serving" };
  if (!windowComplete(stats, policy, now)) return { verdict: "pending" };

  if (c.requests > 0) {
    const rate = (c.errors / c.requests) * 100;
    if (rate > policy.maxErrorRatePercent) {
      return {
        verdict: "failed",
        code: "ERROR_RATE_EXCEEDED",
        reason: `${c.errors}/${c.requests} requests failed (${rate.toFixed(1)}% > ${policy.maxErrorRatePercent}%)`,
      };
    }
  }
  const successes = c.requests - c.errors;
  const budget = policy.maxP95LatencyMs;
  if (budget !== undefined && c.p95Ms !== null && successes >= limits.minLatencySamples && c.p95Ms > budget) {
    return { verdict: "failed", code: "LATENCY_REGRESSION", reason: `p95 ${c.p95Ms} ms > budget ${budget} ms` };
  }
  // Like with like (issue 20 §6): with a warm previous host the ratio is judged on paired runs only.
  if (stats.paired) {
    const p = stats.paired.verdict;
    if (p.verdict === "regressed") return { verdict: "failed", code: "LATENCY_REGRESSION", reason: p.reason };
    if (p.verdict === "inconclusive" && now < stats.paired.waitUntil) return { verdict: "pending" };
    return { verdict: "passed" };
  }
  if (baseline?.p95Ms != null && c.p95Ms !== null && successes >= limits.minLatencySamples) {
    const limit = policy.maxP95LatencyRatio * baseline.p95Ms + limits.latencyFloorMs;
    if (c.p95Ms > limit) {
      return {
        verdict: "failed",
        code: "LATENCY_REGRESSION",
        reason: `p95 ${c.p95Ms} ms > ${policy.maxP95LatencyRatio} x previous ${baseline.p95Ms} ms (+${limits.latencyFloorMs} ms)`,
      };
    }
  }
  return { verdict: "passed" };
}

/**
 * Which failures condemn the bundle itself (never retried, architecture.md §5) and which are circumstances
 * (retried, or decided elsewhere). A full `Record` over every code: a new error code does not
 * compile until someone decides here (issue 20 §2: only errors that prove a bundle bad condemn
 * it; a full, read-only or failing disk — DISK_FULL, STORAGE_READ_ONLY, STORAGE_FAILED, see
 * agent/store/storage-faults.ts — never does).
 */
export const CONDEMNS_BUNDLE: Readonly<Record<ErrorCode, boolean>> = {
  // the bytes or their manifest are wrong (checked against signed hashes and sizes)
  BUNDLE_HASH_MISMATCH: true,
  BUNDLE_SIZE_MISMATCH: true,
  BUNDLE_UNSAFE_ENTRY: true,
  BUNDLE_UNLISTED_ENTRY: true,
  BUNDLE_MISSING_FILE: true,
  BUNDLE_TOO_LARGE: true,
  // signed smoke-test samples that do not decode (shared/samples-codec.ts)
  BUNDLE_SAMPLES_INVALID: true,
  MANIFEST_MISMATCH: true,
  // the model itself fails on this device
  MODEL_LOAD_FAILED: true,
  SMOKE_TEST_FAILED: true,
  HOST_CRASHED: true,
  LATENCY_REGRESSION: true,
  ERROR_RATE_EXCEEDED: true,
  NON_FINITE_OUTPUT: true,
  MEMORY_BUDGET_EXCEEDED: true,
  // local storage faults (issue 20 §2): the device's disk, not the bundle
  DISK_FULL: false,
  STORAGE_READ_ONLY: false,
  STORAGE_FAILED: false,
  // the device's own files changed (self-repair decides), or the bundle was already judged
  LOCAL_INTEGRITY_FAILED: false,
  BUNDLE_MARKED_BAD: false,
  // trust: the document is refused before anything is installed
  SIGNATURE_THRESHOLD_NOT_MET: false,
  UNKNOWN_ROLE: false,
  WRONG_DEVICE: false,
  SEQ_REPLAYED: false,
  EXPIRED: false,
  RELEASE_COUNTER_ROLLBACK: false,
  RELEASE_NOT_SIGNED: false,
  INCOMPATIBLE: false,
  // transport: the transfer failed, not the bytes
  DOWNLOAD_FAILED: false,
  CHUNK_INVALID: false,
  TIMEOUT: false,
  NOT_CONNECTED: false,
  // requests and server-side codes: not about a bundle on the device
  BAD_REQUEST: false,
  VALIDATION_FAILED: false,
  PAYLOAD_TOO_LARGE: false,
  NOT_FOUND: false,
  CONFLICT: false,
  UNAUTHORIZED: false,
  FORBIDDEN: false,
  RANGE_NOT_SATISFIABLE: false,
  MODEL_NOT_READY: false,
  INFERENCE_FAILED: false,
  INVALID_TENSOR: false,
  TELEMETRY_MALFORMED: false,
  TELEMETRY_DEVICE_MISMATCH: false,
  TELEMETRY_TOO_LARGE: false,
  TELEMETRY_SEQ_BACKWARDS: false,
  BUILD_INTERRUPTED: false,
  // governance (issue 21): the fleet server's refusals of a rollout, never a device's verdict
  MODEL_VERSION_RETIRED: false,
  APPROVAL_REQUIRED: false,
  STAGE_TRANSITION_INVALID: false,
  INTERNAL: false,
  // a delta is only a shortcut: on any failure the agent falls back to the full bundle (issue 17)
  DELTA_INVALID: false,
  DELTA_BASE_MISMATCH: false,
  DELTA_RESULT_MISMATCH: false,
  // a server-side answer (replicas): never the bundle's fault
  NO_LEADER: false,
  // the fleet server's store, never seen by an agent as a verdict (issue 14)
  STORE_UNAVAILABLE: false,
  // Sequences (issue 18): a caller's limit or bookkeeping, or a host crash already counted as one.
  SEQUENCE_LIMIT: false,
  SEQUENCE_UNKNOWN: false,
  SEQUENCE_LOST: false,
};

/** Failures that condemn the bundle itself (never retried) rather than the circumstances. */
export function marksBundleBad(code: ErrorCode): boolean {
  return CONDEMNS_BUNDLE[code] === true;
}
