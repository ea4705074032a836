import { createHash } from "node:crypto";
import { ROLLOUT_STATUSES } from "../../shared/http/rollouts.js";
import type { EngineState, MemberPhase } from "../../shared/schemas/rollout-state.js";
import type { RolloutDefinition } from "./definition.js";
import { evaluateGates, type GateEvaluation } from "./gates.js";
import { isWindowOpen } from "./maintenance-window.js";
import type { Observation } from "./observe.js";

/**
 * The rollout planner (issue 4, architecture.md §6): a pure function from the rollout's persisted state,
 * what each device reports, and the time, to the actions that move the rollout on. No I/O and
 * no clock of its own, so every rule below is unit-tested with plain data; `scheduler.ts`
 * applies the actions and persists them.
 */

// The status list is part of the HTTP contract (the rollout view), so it lives in shared/http.
export { ROLLOUT_STATUSES };
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];
/** Statuses whose devices belong to the rollout (one rollout per model per device). */
export const HOLDING_STATUSES: readonly RolloutStatus[] = ["running", "paused", "completed", "rolling-back"];
/** Statuses a newer rollout may only replace by naming them in `supersedes`. */
export const IN_FLIGHT_STATUSES: readonly RolloutStatus[] = ["running", "paused", "rolling-back"];

// Persisted by the store, which decodes it with this schema (shared/schemas/rollout-state.ts).
export type { EngineState };

export interface PlannerRollout {
  id: string;
  status: RolloutStatus;
  definition: RolloutDefinition;
  state: EngineState;
}

export type Phase = MemberPhase;

export interface PlannerMember {
  stage: number;
  assignedAt: number;
  phase: Phase;
  phaseSince: number;
  outcome: "passed" | "failed" | null;
  /** A failure the operator acknowledged by resuming: not counted by the gates any more. */
  acknowledged: boolean;
}

export interface PlannerDevice {
  deviceId: string;
  /** Matches the selector now (devices enrolled or re-tagged later join at the current stage). */
  matches: boolean;
  /** Another holding rollout of the same model that owns this device, if any. */
  heldBy: string | null;
  member: PlannerMember | null;
  /** What the device reports about this rollout's bundle (members only). */
  observation: Observation | null;
}

export type RolloutAction =
  | { kind: "assign"; deviceId: string; stage: number }
  | { kind: "device-phase"; deviceId: string; phase: Exclude<Phase, "done"> }
  | { kind: "device-outcome"; deviceId: string; outcome: "passed" | "failed"; reason: string; message: string }
  | { kind: "start-soak" }
  | { kind: "accuracy-verdict"; decision: NonNullable<EngineState["accuracy"]> }
  | { kind: "advance-stage"; to: number }
  | { kind: "complete" }
  | { kind: "pause"; reason: string }
  | { kind: "rollback"; reason: string };

const MINUTE = 60_000;
const INSTALLING: ReadonlySet<string> = new Set(["staging", "loading", "smoke-testing", "swapping"]);

/** Deterministic cohort order: hash of rollout id and device id (architecture.md §6). */
export function cohortKey(rolloutId: string, deviceId: string): string {
  return createHash("sha256").update(`${rolloutId}\n${deviceId}`).digest("hex");
}

/** How many of `n` devices a stage of `percent` covers (at least one once percent > 0). */
export function stageTarget(n: number, percent: number): number {
  return Math.min(n, Math.ceil((n * percent) / 100 - 1e-9));
}

type Verdict = { outcome: "passed" | "failed"; reason: string; message: string } | { phase: Exclude<Phase, "done"> };

/** A device's verdict from its observation: committed / probation passed, or any failure. */
export function judge(o: Observation): Verdict {
  if (o.probation?.verdict === "failed") {
    const reason = o.probation.reason ?? "PROBATION_FAILED";
    return { outcome: "failed", reason, message: o.probation.message ?? `probation failed: ${reason}` };
  }
  if (o.display === "failed" || o.display === "reverted") {
    return { outcome: "failed", reason: o.error?.code ?? "INTERNAL", message: o.error?.message ?? o.state };
  }
  if (o.state === "committed") return { outcome: "passed", reason: "COMMITTED", message: "committed" };
  if (o.probation?.verdict === "passed") {
    return { outcome: "passed", reason: "PROBATION_PASSED", message: "probation passed" };
  }
  if (o.state === "probation") return { phase: "probation" };
  if (INSTALLING.has(o.state)) return { phase: "install" };
  return { phase: "download" };
}

/** Devices per minute now allowed by the rollout's rate (exponential grows with successes). */
export function ratePerMinute(def: RolloutDefinition, passed: number): number {
  const rate = def.rate;
  if (rate === null) return Number.POSITIVE_INFINITY;
  if ("maxPerMinute" in rate) return rate.maxPerMinute;
  const e = rate.exponential;
  const grown = Math.floor(e.base * e.factor ** Math.floor(passed / e.afterSuccesses));
  return Math.min(grown, e.maxPerMinute ?? Number.POSITIVE_INFINITY);
}

function deadlineSeconds(def: RolloutDefinition, phase: Exclude<Phase, "done">): number {
  if (phase === "download") return def.deadlines.downloadSeconds;
  if (phase === "install") return def.deadlines.installSeconds;
  return def.deadlines.probationSeconds;
}

/** The gates of the current stage over every counted device of the rollout so far. */
export function currentGates(
  rollout: PlannerRollout,
  devices: readonly PlannerDevice[],
  now: number | null = null,
): GateEvaluation {
  const stageIndex = Math.min(rollout.state.stage, rollout.definition.stages.length - 1);
  const stage = rollout.definition.stages[stageIndex]!;
  const counted = devices.filter((d) => d.member !== null && !d.member.acknowledged);
  const { accuracy, soakStartedAt } = rollout.state;
  return evaluateGates(
    stage.gates,
    counted.map((d) => ({
      outcome: d.member!.outcome,
      probation: d.observation?.probation ?? null,
      feedback: d.observation?.feedback,
    })),
    {
      decided: accuracy && accuracy.stage === stageIndex ? accuracy : null,
      waitedSeconds: now === null || soakStartedAt === null ? null : (now - soakStartedAt) / 1000,
    },
  );
}

export function planRolloutStep(
  rollout: PlannerRollout,
  devices: readonly PlannerDevice[],
  now: number,
): RolloutAction[] {
  const { definition: def, state, status } = rollout;
  if (status !== "running" && status !== "paused" && status !== "completed") return [];
  const actions: RolloutAction[] = [];

  // 1. Per-device bookkeeping: verdicts, phase clocks and deadlines (also while paused, so the
  //    status stays true and no device waits forever unnoticed).
  const view: PlannerDevice[] = devices.map((d) => {
    const m = d.member;
    if (m === null || m.outcome !== null || d.observation === null) return d;
    const v = judge(d.observation);
    if ("outcome" in v) {
      actions.push({ kind: "device-outcome", deviceId: d.deviceId, ...v });
      return { ...d, member: { ...m, outcome: v.outcome, phase: "done" } };
    }
    const since = v.phase === m.phase ? m.phaseSince : now;
    if (v.phase !== m.phase) actions.push({ kind: "device-phase", deviceId: d.deviceId, phase: v.phase });
    const limit = deadlineSeconds(def, v.phase);
    if (now - since >= limit * 1000) {
      actions.push({
        kind: "device-outcome",
        deviceId: d.deviceId,
        outcome: "failed",
        reason: "TIMEOUT",
        message: `${v.phase} deadline of ${limit}s passed`,
      });
      return { ...d, member: { ...m, outcome: "failed", phase: "done" } };
    }
    return { ...d, member: { ...m, phase: v.phase, phaseSince: since } };
  });
  if (status === "paused") return actions;

  const members = view.filter((d) => d.member !== null);
  const counted = members.filter((d) => !d.member!.acknowledged);

  // 2. Stop conditions: the rollout-wide abort threshold, then the current stage's gates.
  if (status === "running") {
    const abort = def.abort;
    if (abort.maxFailedPercent !== undefined) {
      const executed = counted.filter((d) => d.member!.outcome !== null).length;
      const failed = counted.filter((d) => d.member!.outcome === "failed").length;
      if (executed >= abort.minExecuted && (failed / executed) * 100 > abort.maxFailedPercent) {
        const reason = `abort threshold: ${failed}/${executed} devices failed > ${abort.maxFailedPercent}%`;
        actions.push({ kind: abort.action, reason });
        return actions;
      }
    }
    const gates = currentGates(rollout, view, now);
    // The accuracy gate decided at this evaluation: kept for the stage (it looks once).
    const acc = gates.accuracy;
    if (acc && !acc.decided && acc.verdict !== "waiting") {
      const { decided: _, verdict, ...rest } = acc;
      actions.push({ kind: "accuracy-verdict", decision: { stage: state.stage, verdict, ...rest } });
    }
    if (gates.breached !== null) {
      actions.push({ kind: abort.action, reason: `stage ${state.stage + 1} gate: ${gates.breached}` });
      return actions;
    }
  }

  // 3. Assignments: fill the current stage's cohort in hash order, within rate and window.
  const stageIndex = status === "completed" ? def.stages.length - 1 : state.stage;
  const stage = def.stages[stageIndex]!;
  const eligible = view.filter((d) => d.member === null && d.matches && d.heldBy === null);
  const target = stageTarget(members.length + eligible.length, stage.percent);
  const need = Math.max(0, target - members.length);
  const passed = members.filter((d) => d.member!.outcome === "passed").length;
  const recent = members.filter((d) => d.member!.assignedAt > now - MINUTE).length;
  const budget = Math.max(0, ratePerMinute(def, passed) - recent);
  const windowOpen = def.maintenanceWindow === null || isWindowOpen(def.maintenanceWindow, now);
  const assignable = windowOpen ? Math.min(need, budget) : 0;
  const chosen = eligible
    .map((d) => ({ d, key: cohortKey(rollout.id, d.deviceId) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .slice(0, assignable);
  for (const { d } of chosen) actions.push({ kind: "assign", deviceId: d.deviceId, stage: stageIndex });
  if (status === "completed") return actions;

  // 4. Stage end: cohort full, every device has a verdict, gates pass, soak elapsed.
  const settled = need === 0 && members.every((d) => d.member!.outcome !== null);
  if (!settled) return actions;
  const soakStart = state.soakStartedAt ?? now;
  if (state.soakStartedAt === null) actions.push({ kind: "start-soak" });
  if (now - soakStart < stage.soakSeconds * 1000) return actions;
  if (!currentGates(rollout, view, now).passing) return actions;
  if (state.stage + 1 < def.stages.length) actions.push({ kind: "advance-stage", to: state.stage + 1 });
  else actions.push({ kind: "complete" });
  return actions;
}

/** A member as `abort` sees it; the executor reads `sideAssigned` from the device's desired state. */
export interface AbortMember {
  deviceId: string;
  /** This rollout's bundle still runs beside the active version in the device's desired state. */
  sideAssigned: boolean;
}

export type AbortAction = { kind: "remove-side"; deviceId: string };

/**
 * What `abort` changes on devices. An active rollout stops where it is: devices keep what they
 * were given (undoing it is `rollback`). A shadow/ab rollout's side candidate goes: after an abort
 * nothing would ever promote or remove it, and it would keep taking device time (shadow) or a
 * share of the callers (ab) for a version the operator gave up on. The active assignment stays,
 * so devices go on serving what they served. Decided by the serving mode, not the strategy: after
 * `promote` the new version is the active one and abort leaves it.
 */
export function planAbort(rollout: PlannerRollout, members: readonly AbortMember[]): AbortAction[] {
  if (rollout.state.servingMode === "active") return [];
  return members.filter((m) => m.sideAssigned).map((m) => ({ kind: "remove-side" as const, deviceId: m.deviceId }));
}

/** A member as `rollback` sees it; the executor reads `sideAssigned` from the device's desired state. */
export interface RollbackMember {
  deviceId: string;
  /** Already undone (rollback marker set): by an earlier `abort`, or a rollback cut short by a restart. */
  handled: boolean;
  /** This rollout's bundle still runs beside the active version in the device's desired state. */
  sideAssigned: boolean;
  /** The bundle the device ran before the rollout assigned it, or null if it had none. */
  previousSha256: string | null;
}

export type RollbackAction =
  | { kind: "skip"; deviceId: string }
  | { kind: "remove-side"; deviceId: string }
  | { kind: "remove-model"; deviceId: string }
  | { kind: "re-release"; deviceId: string; previousSha256: string };

/**
 * What `rollback` does per member, decided from each device's desired state rather than the
 * rollout's serving mode (a promote cut short by a crash leaves some devices with the side):
 * - a side version (shadow/ab, not promoted) never replaced the active one, so the device still
 *   runs what it ran before: dropping the side is the whole undo, as in `abort`. Re-releasing the
 *   active version would make the device download and install what it already runs.
 * - otherwise the rollout's bundle may be the active one: the previous bundle comes back as a
 *   re-release with a higher counter (devices refuse lower ones), or, with no previous version,
 *   the model's assignment goes.
 * Removals come first: they need no release signatures, so in offline signing mode they are not
 * held up by a re-release waiting for its signatures.
 */
export function planRollback(members: readonly RollbackMember[]): RollbackAction[] {
  const actions = members.map((m): RollbackAction => {
    if (m.handled) return { kind: "skip", deviceId: m.deviceId };
    if (m.sideAssigned) return { kind: "remove-side", deviceId: m.deviceId };
    if (m.previousSha256 === null) return { kind: "remove-model", deviceId: m.deviceId };
    return { kind: "re-release", deviceId: m.deviceId, previousSha256: m.previousSha256 };
  });
  return [...actions.filter((a) => a.kind !== "re-release"), ...actions.filter((a) => a.kind === "re-release")];
}
