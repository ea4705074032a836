import type { DisplayState } from "../../shared/rollout-display.js";
import type {
  DeviceEvent,
  FeedbackFigures,
  ProbationReport,
  ReportedState,
  UpdateState,
} from "../../shared/schemas/device-state.js";
import type { FeedbackCounts } from "./accuracy-gate.js";

export interface Observation {
  /** The agent's update state for this bundle, or `pending` when the device has not started. */
  state: UpdateState | "pending";
  display: DisplayState;
  progress?: { bytes: number; total: number };
  error?: { code: string; message: string };
  /** The device's probation report for this bundle, when the agent sends one (issue 3). */
  probation: ProbationReport | null;
  /**
   * Joined ground-truth counts (issue 22) of this bundle's version and of the version the device ran
   * before it (the probation baseline), for the accuracy gate; absent when the device reports none.
   */
  feedback?: { candidate: FeedbackCounts; baseline: FeedbackCounts };
  /** How a delta for this bundle went (issue 17), from the newest `update.delta` event; absent: none tried. */
  delta?: DeltaOutcome;
}

export interface DeltaOutcome {
  outcome: "applied" | "fallback";
  bytes: number;
  fullBytes: number;
  error?: { code: string; message: string };
}

/** Sums a device's reported feedback entries of `version` (all A/B arms). Pure. */
function countsOf(entries: readonly FeedbackFigures[], version: string): FeedbackCounts {
  let joined = 0;
  let correct = 0;
  for (const e of entries) {
    if (e.version !== version) continue;
    joined += e.joined;
    correct += e.correct;
  }
  return { joined, correct };
}

const INSTALLING: ReadonlySet<string> = new Set(["staging", "loading", "smoke-testing", "swapping"]);

export function displayOf(state: UpdateState | "pending"): DisplayState {
  if (state === "committed" || state === "probation" || state === "downloading") return state;
  if (state === "failed") return "failed";
  if (state === "reverting" || state === "reverted") return "reverted";
  if (INSTALLING.has(state)) return "installing";
  return "pending"; // pending, idle, verifying
}

/**
 * Pure: where one device stands with `bundle` of `model`, from its retained `reported` document
 * and its recent events (newest first). Committed wins; a failure counts only when it concerns
 * this bundle or a rejection of a desired document at or after `desiredSeq` (SEQ_REPLAYED only
 * means the device already holds the document, e.g. re-retained after a server restart).
 */
export function observeDevice(input: {
  model: string;
  bundle: string;
  desiredSeq: number;
  reported: ReportedState | null;
  events: readonly DeviceEvent[];
}): Observation {
  const rm = input.reported?.models.find((m) => m.model === input.model);
  let probation: ProbationReport | null = rm?.probation?.candidate.sha256 === input.bundle ? rm.probation : null;
  if (probation === null) {
    for (const ev of input.events) {
      if (ev.type === "probation.verdict" && ev.bundle === input.bundle) {
        probation = ev.report;
        break;
      }
    }
  }
  const deltaEvent = input.events.find((ev) => ev.type === "update.delta" && ev.bundle === input.bundle);
  const delta: DeltaOutcome | null =
    deltaEvent?.type === "update.delta"
      ? {
          outcome: deltaEvent.outcome,
          bytes: deltaEvent.bytes,
          fullBytes: deltaEvent.fullBytes,
          ...(deltaEvent.error ? { error: { code: deltaEvent.error.code, message: deltaEvent.error.message } } : {}),
        }
      : null;
  const make = (state: UpdateState | "pending", extra: Partial<Observation> = {}): Observation => {
    const o: Observation = { state, display: displayOf(state), probation, ...(delta ? { delta } : {}), ...extra };
    const base = probation?.baseline;
    if (rm?.feedback && probation && base) {
      o.feedback = {
        candidate: countsOf(rm.feedback, probation.candidate.version),
        baseline: countsOf(rm.feedback, base.version),
      };
    }
    return o;
  };

  if (rm?.committed?.sha256 === input.bundle) return make("committed");
  // A side candidate (shadow / A-B, issue 4/8) runs beside the active version and is never the
  // model's candidate until promoted: its live health (shadow agreement, latency against the active
  // version as baseline) is this bundle's probation report, passed once it runs (`committed`).
  const side = rm?.side?.sha256 === input.bundle && rm.candidate?.sha256 !== input.bundle ? rm.side : null;
  if (side && input.reported) {
    const verdict = side.state === "committed" ? "passed" : side.state === "failed" ? "failed" : "pending";
    probation = { verdict, startedAt: input.reported.ts, candidate: side.health, baseline: side.baseline };
    if (side.state === "failed") {
      const error = side.error ?? { code: "INTERNAL", message: "side candidate failed" };
      probation = { ...probation, reason: error.code, message: error.message };
      return make("failed", { error });
    }
    return make(side.state);
  }
  if (rm?.candidate?.sha256 === input.bundle) {
    const failed = rm.state === "failed" || rm.state === "reverting" || rm.state === "reverted";
    if (failed)
      return make(rm.state, { error: rm.error ?? { code: "INTERNAL", message: `device reported ${rm.state}` } });
    return make(rm.state, rm.progress ? { progress: rm.progress } : {});
  }
  for (const ev of input.events) {
    if (ev.type === "update.transition" && ev.bundle === input.bundle) {
      if (ev.to === "failed" || ev.to === "reverted" || ev.to === "reverting") {
        return make(ev.to, { error: ev.error ?? { code: "INTERNAL", message: `device went to ${ev.to}` } });
      }
    }
    if (
      ev.type === "desired.rejected" &&
      ev.seq !== null &&
      ev.seq >= input.desiredSeq &&
      ev.error.code !== "SEQ_REPLAYED"
    ) {
      return make("failed", { error: { code: ev.error.code, message: ev.error.message } });
    }
  }
  return make("pending");
}
