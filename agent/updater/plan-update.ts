import type { Assignment, DesiredState } from "../../shared/schemas/desired-state.js";
import type { InstalledRef, UpdateState } from "../../shared/schemas/device-state.js";
import { isStorageCode } from "../store/storage-faults.js";

/** What the store knows about one model (architecture.md §5). */
export interface ModelCurrent {
  model: string;
  state: UpdateState;
  committed: InstalledRef | null;
  candidate: InstalledRef | null;
  /** The record's last error: a storage fault (issue 20 §2) leaves its candidate retryable. */
  error?: { code: string } | null;
}

export type PlannedAction =
  | { kind: "noop"; model: string; reason: "already-committed" | "in-progress" | "already-failed" }
  | { kind: "install"; model: string; assignment: Assignment; supersedes: InstalledRef | null };

/** States in which an update for the candidate is still under way (a restart resumes it). */
export const IN_PROGRESS_STATES: ReadonlySet<UpdateState> = new Set<UpdateState>([
  "verifying",
  "downloading",
  "staging",
  "loading",
  "smoke-testing",
  "swapping",
  "probation",
  "reverting",
]);

/**
 * Decides, per assigned model, whether anything must happen. Pure (architecture.md §1): the executor in
 * `updater.ts` does the I/O. Models present on the device but absent from the desired state are
 * left alone: removing a model is an explicit operator action, not a side effect of a document.
 */
export function planUpdate(current: readonly ModelCurrent[], desired: DesiredState): PlannedAction[] {
  const byModel = new Map(current.map((c) => [c.model, c]));
  return desired.assignments.map((assignment): PlannedAction => {
    const model = assignment.model;
    const cur = byModel.get(model);
    const sha = assignment.bundle.sha256;
    if (!cur) return { kind: "install", model, assignment, supersedes: null };
    if (cur.candidate?.sha256 === sha) {
      if (IN_PROGRESS_STATES.has(cur.state)) return { kind: "noop", model, reason: "in-progress" };
      // A bundle that failed or was reverted is marked bad and never retried (architecture.md §5) — unless it
      // failed for the device's disk (full, read-only, I/O): then the same bundle is tried again
      // when space returns or a new rollout names it again (issue 20 §2).
      // (A repair of the committed bundle retries on its own: agent/updater/self-heal.ts.)
      const storageFault = cur.state === "failed" && isStorageCode(cur.error?.code) && cur.committed?.sha256 !== sha;
      if ((cur.state === "failed" && !storageFault) || cur.state === "reverted") {
        return { kind: "noop", model, reason: "already-failed" };
      }
      if (storageFault) return { kind: "install", model, assignment, supersedes: null };
    }
    if (cur.committed?.sha256 === sha && !IN_PROGRESS_STATES.has(cur.state)) {
      return { kind: "noop", model, reason: "already-committed" };
    }
    const supersedes = cur.candidate && IN_PROGRESS_STATES.has(cur.state) ? cur.candidate : null;
    return { kind: "install", model, assignment, supersedes };
  });
}
