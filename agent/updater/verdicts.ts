import type { ErrorCode } from "../../shared/errors.js";
import type { UpdateState } from "../../shared/schemas/device-state.js";

/** Pipeline steps that can be (re)started, in order (DESIGN §5). */
export const PIPELINE = ["downloading", "staging", "loading", "smoke-testing", "swapping", "probation"] as const;
export type PipelineStep = (typeof PIPELINE)[number];

export type ResumeAction =
  | { kind: "none" }
  | { kind: "run"; from: PipelineStep }
  | { kind: "revert"; code: ErrorCode; reason: string };

/**
 * What to do at startup with a model whose update was interrupted (DESIGN §5: "a restart resumes
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

export interface ProbationObservation {
  candidateSha: string;
  /** SHA-256 of the version serving the model when the window closed (null: nothing serves). */
  servingSha: string | null;
  hostCrashes: number;
  maxHostRestarts: number;
}

export type ProbationVerdict = { ok: true } | { ok: false; code: ErrorCode; reason: string };

/**
 * Probation verdict (DESIGN §5). For now: the candidate must still be serving and its host must not
 * have crashed more than the policy allows. Error rate, latency and memory verdicts come later.
 */
export function judgeProbation(o: ProbationObservation): ProbationVerdict {
  if (o.hostCrashes > o.maxHostRestarts) {
    return { ok: false, code: "HOST_CRASHED", reason: `candidate host crashed ${o.hostCrashes} times` };
  }
  if (o.servingSha !== o.candidateSha) {
    return { ok: false, code: "HOST_CRASHED", reason: "candidate is no longer serving" };
  }
  return { ok: true };
}

/** Failures that condemn the bundle itself (never retried) rather than the circumstances. */
export function marksBundleBad(code: ErrorCode): boolean {
  return [
    "BUNDLE_HASH_MISMATCH",
    "BUNDLE_SIZE_MISMATCH",
    "BUNDLE_UNSAFE_ENTRY",
    "BUNDLE_UNLISTED_ENTRY",
    "BUNDLE_MISSING_FILE",
    "BUNDLE_TOO_LARGE",
    "MANIFEST_MISMATCH",
    "MODEL_LOAD_FAILED",
    "SMOKE_TEST_FAILED",
    "HOST_CRASHED",
  ].includes(code);
}
