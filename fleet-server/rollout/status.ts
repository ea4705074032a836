import type { DeviceEvent, ReportedState, UpdateState } from "../../shared/schemas/device-state.js";

export type DeviceRolloutState = UpdateState | "pending";

export interface DeviceRolloutStatus {
  state: DeviceRolloutState;
  progress?: { bytes: number; total: number };
  error?: { code: string; message: string };
}

const FAILED_STATES: ReadonlySet<UpdateState> = new Set(["failed", "reverting", "reverted"]);

/**
 * Pure: where one device stands in a rollout of `bundle` for `model`, from what the device
 * reported and its events. Committed wins (the device runs the bundle); a failure counts only
 * when it concerns this bundle (or a rejection of the desired document this rollout issued),
 * so an unrelated earlier failure does not taint the rollout.
 */
export function deviceRolloutStatus(input: {
  model: string;
  bundle: string;
  desiredSeq: number;
  reported: ReportedState | null;
  events: readonly DeviceEvent[];
}): DeviceRolloutStatus {
  const rm = input.reported?.models.find((m) => m.model === input.model);
  // Whatever it is doing next, a device whose committed model is this bundle runs it.
  if (rm?.committed?.sha256 === input.bundle) return { state: "committed" };

  if (rm?.candidate?.sha256 === input.bundle) {
    if (FAILED_STATES.has(rm.state)) {
      return { state: "failed", error: rm.error ?? { code: "INTERNAL", message: `device reported ${rm.state}` } };
    }
    return { state: rm.state, ...(rm.progress ? { progress: rm.progress } : {}) };
  }

  for (const ev of input.events) {
    if (ev.type === "update.transition" && ev.bundle === input.bundle && FAILED_STATES.has(ev.to)) {
      return { state: "failed", error: ev.error ?? { code: "INTERNAL", message: `device went to ${ev.to}` } };
    }
    // SEQ_REPLAYED only means the device already has this document (e.g. re-retained after a
    // server restart); it is not a failure of the rollout.
    if (
      ev.type === "desired.rejected" &&
      ev.seq !== null &&
      ev.seq >= input.desiredSeq &&
      ev.error.code !== "SEQ_REPLAYED"
    ) {
      return { state: "failed", error: { code: ev.error.code, message: ev.error.message } };
    }
  }
  return { state: "pending" };
}

export type RolloutStatus = "running" | "completed" | "failed";

export interface RolloutCounts {
  total: number;
  committed: number;
  failed: number;
  inProgress: number;
  pending: number;
}

export function countStates(states: readonly DeviceRolloutState[]): RolloutCounts {
  const c: RolloutCounts = { total: states.length, committed: 0, failed: 0, inProgress: 0, pending: 0 };
  for (const s of states) {
    if (s === "committed") c.committed++;
    else if (s === "failed") c.failed++;
    else if (s === "pending") c.pending++;
    else c.inProgress++;
  }
  return c;
}

/** Completed when every device committed; failed once all are terminal and any failed. */
export function rolloutStatus(counts: RolloutCounts): RolloutStatus {
  if (counts.total > 0 && counts.committed === counts.total) return "completed";
  if (counts.committed + counts.failed === counts.total && counts.failed > 0) return "failed";
  return "running";
}
