import type { Assignment, DesiredState } from "../../shared/schemas/desired-state.js";
import type { InstalledRef, UpdateState } from "../../shared/schemas/device-state.js";

/** What the store knows about one model (DESIGN §5). */
export interface ModelCurrent {
  model: string;
  state: UpdateState;
  committed: InstalledRef | null;
  candidate: InstalledRef | null;
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
 * Decides, per assigned model, whether anything must happen. Pure (DESIGN §1): the executor in
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
      // A bundle that failed or was reverted is marked bad and never retried (DESIGN §5).
      if (cur.state === "failed" || cur.state === "reverted") return { kind: "noop", model, reason: "already-failed" };
    }
    if (cur.committed?.sha256 === sha && !IN_PROGRESS_STATES.has(cur.state)) {
      return { kind: "noop", model, reason: "already-committed" };
    }
    const supersedes = cur.candidate && IN_PROGRESS_STATES.has(cur.state) ? cur.candidate : null;
    return { kind: "install", model, assignment, supersedes };
  });
}
