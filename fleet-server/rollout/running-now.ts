import type { MemberState } from "../../shared/rollout-display.js";
import { ReportedStateSchema } from "../../shared/schemas/device-state.js";

/** What a device serves for the rollout's model right now, from its last `reported` document. */
export interface RunningNow {
  version: string;
  variant: string;
  bundle: string;
  /** True when that is this rollout's bundle for the device. */
  thisRollout: boolean;
}

/** Pure: the model's committed (active) version in the device's last report; null when none. */
export function runningNowOf(reported: unknown, model: string, memberBundle: string): RunningNow | null {
  const parsed = ReportedStateSchema.safeParse(reported);
  if (!parsed.success) return null;
  const committed = parsed.data.models.find((m) => m.model === model)?.committed;
  if (!committed) return null;
  return {
    version: committed.version,
    variant: committed.variant,
    bundle: committed.sha256,
    thisRollout: committed.sha256 === memberBundle,
  };
}

/**
 * Pure: a word for the operator when the rollout's verdict and what the device runs disagree
 * (issue 20 §4). The verdict stands (a device that missed its deadline counted as failed when the
 * gates judged it, and changing it later would rewrite a decision already taken), but a device
 * that committed the version after all must not look as if it still ran the old one.
 */
export function verdictNote(state: MemberState, reason: string | null, running: RunningNow | null): string | null {
  if ((state !== "failed" && state !== "reverted") || !running?.thisRollout) return null;
  const verdict = reason ? `${state} (${reason})` : state;
  return `the rollout's verdict is ${verdict}, but the device committed ${running.version} (${running.variant}) afterwards and runs it now`;
}
