import type { RolloutView } from "../../shared/http/rollouts.js";
import { type DisplayState, emptyDisplayCounts, type MemberState } from "../../shared/rollout-display.js";
import type { DeviceRepo, DeviceRow } from "../store/device-repo.js";
import type { MemberRow, RolloutRepo, RolloutRow } from "../store/rollout-repo.js";
import type { RolloutDefinition } from "./definition.js";
import { EVENTS_PER_DEVICE, engineOf, ROLLBACK_REMOVED, type RolloutExecutor } from "./executor.js";
import type { Observation } from "./observe.js";
import { currentGates, type PlannerDevice } from "./planner.js";
import { runningNowOf, verdictNote } from "./running-now.js";

const HISTORY = 100;

/**
 * Pure: the member's state from the observation of its bundle and what the rollout recorded. A
 * recorded failure wins. `removed` only replaces `pending` (the device reports nothing about the
 * bundle any more): until the agent drops the side it still runs it and says so.
 */
export function memberState(observed: DisplayState, m: Pick<MemberRow, "outcome" | "rollbackSha256">): MemberState {
  if (m.outcome === "failed" && observed !== "failed" && observed !== "reverted") return "failed";
  if (m.rollbackSha256 === ROLLBACK_REMOVED && observed === "pending") return "removed";
  return observed;
}

/**
 * Pure: one device of the rollout view, from its membership, its device row and the observations
 * of its bundle (and of its rollback bundle, when the rollout moved it back).
 */
export function memberView(
  row: RolloutRow,
  m: MemberRow,
  dev: Pick<DeviceRow, "reported" | "lastSeen"> | null,
  obs: Observation,
  back: Observation | null,
  variantNote: string | null = null,
) {
  const display = memberState(obs.display, m);
  let rollback: { bundle: string | null; state: DisplayState; error?: { code: string; message: string } } | null = null;
  if (m.rollbackSha256 === ROLLBACK_REMOVED) rollback = { bundle: null, state: "committed" };
  else if (m.rollbackSha256 !== null && back) {
    rollback = { bundle: m.rollbackSha256, state: back.display, ...(back.error ? { error: back.error } : {}) };
  }
  const bundle = m.bundleSha256;
  // What the device serves now, beside the verdict, so the two are never confused (issue 20 §4).
  const runningNow = runningNowOf(dev?.reported ?? null, row.model, bundle);
  const note = verdictNote(display, m.outcomeReason, runningNow);
  return {
    deviceId: m.deviceId,
    stage: m.stage,
    // Each device's own bundle: with `variant: auto` they differ by profile (issue 5).
    variant: m.variant,
    bundle,
    variantReason: m.variantReason,
    ...(variantNote ? { variantNote } : {}),
    state: display,
    agentState: obs.state,
    outcome: m.outcome,
    reason: m.outcomeReason,
    acknowledged: m.acknowledged,
    assignedAt: m.assignedAt,
    previous: m.previous,
    ...(obs.progress ? { progress: obs.progress } : {}),
    ...(obs.error
      ? { error: obs.error }
      : m.outcome === "failed" && m.outcomeReason === "TIMEOUT"
        ? { error: { code: "TIMEOUT", message: "deadline passed" } }
        : {}),
    ...(obs.probation ? { probation: obs.probation } : {}),
    ...(obs.delta ? { delta: obs.delta } : {}),
    ...(obs.feedback ? { feedback: obs.feedback } : {}),
    rollback,
    runningNow,
    ...(note ? { note } : {}),
    updatedAt: dev?.lastSeen ?? m.assignedAt,
  };
}

/**
 * Pure: what deltas did for the rollout's devices (issue 17). `bytesSaved` counts applied deltas only (a
 * fallback downloads the delta's bytes and then the full bundle, so it costs `bytes` extra).
 */
export function deliveryOf(members: readonly { delta?: Observation["delta"] }[]) {
  let deltasApplied = 0;
  let deltaFallbacks = 0;
  let bytesSaved = 0;
  for (const m of members) {
    if (m.delta?.outcome === "applied") {
      deltasApplied++;
      bytesSaved += Math.max(0, m.delta.fullBytes - m.delta.bytes);
    } else if (m.delta?.outcome === "fallback") deltaFallbacks++;
  }
  return { deltasApplied, deltaFallbacks, bytesSaved };
}

/**
 * The operator's view of a rollout (`GET /v1/rollouts/{id}`): status, current stage, per-stage
 * progress by display state, the current gate evaluation, each device, and the history.
 * `counts` has every display state plus `inProgress`, with reverted devices counted under
 * `failed` too (a revert is the rollout failing on that device); members whose assignment the
 * rollout removed count as `removed`, not `pending`.
 */
export function rolloutView(deps: { rollouts: RolloutRepo; devices: DeviceRepo; executor: RolloutExecutor }) {
  const { rollouts, devices, executor } = deps;

  return function view(row: RolloutRow) {
    const engine = engineOf(row);
    const members = rollouts.devices(row.id);
    // Issue 14: each member's device without its signed desired state, and all members' recent
    // events in one query, as the planner reads them. Full rows and one events query per member made
    // this view 3.6 s at 10,000 members (most of the server's CPU while an operator watched).
    const events = devices.recentEventsOfMembers(row.id, EVENTS_PER_DEVICE);
    const perDevice = members.map((m) => {
      const dev = devices.getSummary(m.deviceId);
      const evs = events.get(m.deviceId) ?? [];
      const back =
        m.rollbackSha256 !== null && m.rollbackSha256 !== ROLLBACK_REMOVED
          ? executor.observe(row, m, dev, m.rollbackSha256, evs)
          : null;
      // Why not the profile's preferred variant (issue 20 §7), from the registry and profile as they are now.
      const variantNote = executor.explainVariant(row, dev, m.variant);
      return memberView(row, m, dev, executor.observe(row, m, dev, m.bundleSha256, evs), back, variantNote);
    });

    const all = emptyDisplayCounts();
    for (const d of perDevice) {
      all.total++;
      all[d.state]++;
    }
    // `failed` counts reverted devices too (what the gates count as failed); `reverted` says how many.
    const counts = {
      ...all,
      failed: all.failed + all.reverted,
      inProgress: all.downloading + all.installing + all.probation,
    };
    const base = {
      id: row.id,
      model: row.model,
      version: row.version,
      variant: row.variant,
      bundle: row.bundleSha256,
      // Decoded with the contract's schemas by the store (fleet-server/store/rollout-repo.ts).
      target: row.target,
      healthPolicy: row.healthPolicy,
      createdAt: row.createdAt,
      devices: perDevice,
      counts,
      delivery: deliveryOf(perDevice),
      feedback: pooledFeedback(perDevice),
    };
    const def: RolloutDefinition = engine.definition;
    const plannerDevices: PlannerDevice[] = members.map((m, i) => ({
      deviceId: m.deviceId,
      matches: true,
      heldBy: null,
      member: {
        stage: m.stage,
        assignedAt: Date.parse(m.assignedAt),
        phase: "done",
        phaseSince: 0,
        outcome: m.outcome,
        acknowledged: m.acknowledged,
      },
      observation:
        perDevice[i]?.probation || perDevice[i]?.feedback
          ? {
              state: "pending",
              display: "pending",
              probation: perDevice[i]!.probation ?? null,
              ...(perDevice[i]!.feedback ? { feedback: perDevice[i]!.feedback } : {}),
            }
          : null,
    }));
    const stageIndex = Math.min(engine.state.stage, def.stages.length - 1);
    const stage = def.stages[stageIndex]!;
    return {
      ...base,
      status: engine.status,
      reason: engine.state.reason,
      strategy: def.strategy,
      servingMode: engine.state.servingMode,
      stage: {
        index: stageIndex,
        number: stageIndex + 1,
        of: def.stages.length,
        percent: stage.percent,
        soakSeconds: stage.soakSeconds,
        startedAt: new Date(engine.state.stageStartedAt).toISOString(),
        soakStartedAt: engine.state.soakStartedAt === null ? null : new Date(engine.state.soakStartedAt).toISOString(),
      },
      stages: def.stages.map((s, i) => {
        const c = emptyDisplayCounts();
        for (const d of perDevice.filter((x) => x.stage === i)) {
          c.total++;
          c[d.state]++;
        }
        return { index: i, percent: s.percent, soakSeconds: s.soakSeconds, gates: s.gates, counts: c };
      }),
      gates: currentGates(engine, plannerDevices),
      definition: def,
      history: rollouts.events(row.id, HISTORY),
    };
  };
}

/** The members' joined ground truth, pooled (issue 22); null when none reports any. Pure. */
type MemberFeedback = { joined: number; correct: number };
function pooledFeedback(
  members: readonly { feedback?: { candidate: MemberFeedback; baseline: MemberFeedback } }[],
): RolloutView["feedback"] {
  const sum = { candidate: { joined: 0, correct: 0 }, baseline: { joined: 0, correct: 0 } };
  let devices = 0;
  for (const m of members) {
    if (!m.feedback) continue;
    devices++;
    for (const arm of ["candidate", "baseline"] as const) {
      sum[arm].joined += m.feedback[arm].joined;
      sum[arm].correct += m.feedback[arm].correct;
    }
  }
  if (devices === 0) return null;
  const acc = (c: { joined: number; correct: number }) => ({
    ...c,
    accuracy: c.joined > 0 ? c.correct / c.joined : null,
  });
  return { devices, candidate: acc(sum.candidate), baseline: acc(sum.baseline) };
}
