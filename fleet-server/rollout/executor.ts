import type { Clock } from "../../shared/clock.js";
import { type StageEventInput, withStage } from "../../shared/http/rollout-history.js";
import type { Logger } from "../../shared/logger.js";
import type { Assignment, SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { EngineState, PreviousRef } from "../../shared/schemas/rollout-state.js";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import type { Topics } from "../../shared/topics.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import type { Transport } from "../broker/transport.js";
import type { GovernanceService } from "../registry/governance-service.js";
import type { ReReleaser } from "../registry/re-release.js";
import type { DeviceRepo, DeviceRow } from "../store/device-repo.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { MemberRow, RolloutRepo, RolloutRow } from "../store/rollout-repo.js";
import { assignmentStrategy, matchesSelector } from "./definition.js";
import { type DeltaLookup, prepareDelta, withDeltas } from "./delta-offer.js";
import {
  assignmentsForMode,
  buildDesiredState,
  hasSide,
  signDesiredState,
  withoutModel,
  withoutSide,
} from "./desired-state.js";
import { currentAssignments, previousOf } from "./device-assignments.js";
import { type Observation, observeDevice } from "./observe.js";
import { createPacedPublisher } from "./paced-publish.js";
import {
  HOLDING_STATUSES,
  type PlannerDevice,
  type PlannerRollout,
  planAbort,
  planRollback,
  planRolloutStep,
  type RolloutAction,
  type RolloutStatus,
} from "./planner.js";
import type { VariantAssignment } from "./variant-assignment.js";

export interface ExecutorDeps {
  log: Logger;
  clock: Clock;
  topics: Topics;
  transport: Transport;
  devices: DeviceRepo;
  rollouts: RolloutRepo;
  models: ModelRepo;
  reRelease: ReReleaser;
  director: KeyPair;
  /** The root chain (oldest first) sent beside each desired state, so devices learn rotations (issue 7). */
  rootChain?: readonly Envelope<Root>[];
  /** Which bundle (variant) of the rollout's version each device gets (issue 5). */
  variants: VariantAssignment;
  /** Issue 21: holds an unapproved version at its canary share; a completed 100 % rollout makes it production. */
  governance?: Pick<GovernanceService, "holdAtCanary" | "rolloutCompleted">;
  /** Tensor-level deltas offered beside the full bundle (issue 17); absent: full bundles only. */
  deltas?: DeltaLookup;
}

/** What a device ran for the model before a rollout assigned it: the rollback target. */
export type { PreviousRef };

export const EVENTS_PER_DEVICE = 200;
/** Desired-state publishes of one step in flight at once (each waits for its QoS 1 PUBACK). */
const PUBLISH_WINDOW = 256;
/** Longest run of planner actions without a turn of the event loop. */
const SLICE_MS = 20;
/** rollback_sha256 when the rollout's assignment was removed: a side (abort, rollback) or a first version. */
export const ROLLBACK_REMOVED = "removed";

const releaseRef = (b: BundleRow) => ({ sha256: b.sha256, version: b.version, releaseCounter: b.releaseCounter });

/** The planner's view of a stored rollout (the store decoded every column with its schema). */
export function engineOf(row: RolloutRow): PlannerRollout {
  return { id: row.id, status: row.status, definition: row.definition, state: row.state };
}

/**
 * Applies planner actions: signs and publishes desired state, records transitions. Every
 * database change is committed before the matching publish, so a crash in between at worst
 * leaves a retained message to re-send (the server republishes on start), never a device the
 * rollout forgot it assigned.
 */
export function createRolloutExecutor(deps: ExecutorDeps) {
  const { log, clock, topics, transport, devices, rollouts, models, reRelease, director, variants, deltas } = deps;
  const iso = (t: number) => new Date(t).toISOString();

  /** Where the device stands with its own bundle of the rollout (or `bundle`, e.g. a rollback's). */
  function observe(
    row: RolloutRow,
    m: MemberRow,
    device: Pick<DeviceRow, "reported"> | null,
    bundle = m.bundleSha256,
    events: readonly DeviceEvent[] = devices.recentEvents(m.deviceId, EVENTS_PER_DEVICE).map((e) => e.body),
  ): Observation {
    return observeDevice({
      model: row.model,
      bundle,
      desiredSeq: m.desiredSeq,
      reported: device?.reported ?? null,
      events,
    });
  }

  function plannerDevices(row: RolloutRow, engine: PlannerRollout): PlannerDevice[] {
    const members = new Map(rollouts.devices(row.id).map((m) => [m.deviceId, m]));
    const heldBy = new Map<string, string>();
    for (const h of rollouts.holders(row.model, HOLDING_STATUSES)) {
      if (h.rolloutId !== row.id) heldBy.set(h.deviceId, h.rolloutId);
    }
    const all = devices.listSummaries();
    const events = devices.recentEventsOfMembers(row.id, EVENTS_PER_DEVICE);
    const byId = new Map(all.map((d) => [d.id, d]));
    const out: PlannerDevice[] = all.map((d) => {
      const m = members.get(d.id);
      return {
        deviceId: d.id,
        matches: matchesSelector(d, engine.definition.target),
        heldBy: heldBy.get(d.id) ?? null,
        member: m
          ? {
              stage: m.stage,
              assignedAt: Date.parse(m.assignedAt),
              phase: m.phase,
              phaseSince: Date.parse(m.phaseSince ?? m.assignedAt),
              outcome: m.outcome,
              acknowledged: m.acknowledged,
            }
          : null,
        observation: m ? observe(row, m, byId.get(d.id) ?? null, m.bundleSha256, events.get(d.id) ?? []) : null,
      };
    });
    return out;
  }

  /** Signs and stores the device's next desired state; `persist` runs in the same transaction as the seq. */
  function prepareDesired(
    deviceId: string,
    engine: PlannerRollout,
    next: (previous: Assignment[]) => Assignment[],
    persist: (seq: number, device: DeviceRow) => void,
  ): SignedDesiredState | null {
    const now = clock.now();
    return rollouts.transaction(() => {
      const device = devices.get(deviceId);
      if (!device) return null;
      const seq = devices.nextSeq(deviceId);
      const doc = buildDesiredState({
        deviceId,
        seq,
        now,
        assignments: withDeltas(next(currentAssignments(device.desired)), device.reported, deltas),
        healthPolicy: engine.definition.healthPolicy,
        rollout: { id: engine.id, stage: engine.state.stage },
      });
      const env = signDesiredState(doc, director, deps.rootChain);
      devices.setDesired(deviceId, env);
      persist(seq, device);
      return env;
    });
  }

  async function send(deviceId: string, signed: SignedDesiredState): Promise<void> {
    await transport.publish(topics.device(deviceId, "desired"), JSON.stringify(signed), { qos: 1, retain: true });
  }

  /** `prepareDesired`, then publish (after the commit: see the note on the executor). */
  async function publishDesired(...args: Parameters<typeof prepareDesired>): Promise<void> {
    const signed = prepareDesired(...args);
    if (signed) await send(args[0], signed);
  }

  const strategyOf = (e: PlannerRollout) => assignmentStrategy(e.definition, e.state.servingMode);

  function newAssignment(bundle: BundleRow, def: PlannerRollout["definition"]) {
    return {
      model: bundle.name,
      bundle: { sha256: bundle.sha256, size: bundle.size },
      releaseCounter: bundle.releaseCounter,
      manifest: bundle.manifest,
      ...(def.sequenceDrainSeconds !== null ? { sequenceDrainSeconds: def.sequenceDrainSeconds } : {}),
    };
  }

  async function assign(row: RolloutRow, engine: PlannerRollout, deviceId: string, stage: number): Promise<void> {
    // Without the signed desired state: prepareDesired reads it once, inside its transaction.
    const device = devices.getSummary(deviceId);
    if (!device) return;
    // Chosen once, at assignment, and stored with the member: a later measurement or profile
    // change applies to the next rollout, never to a device already on its way.
    const chosen = variants.pick(row, device);
    await prepareDelta(deltas, device.reported, row.model, chosen.bundle.sha256); // built before it is offered
    await publishDesired(
      deviceId,
      engine,
      (prev) => assignmentsForMode(prev, newAssignment(chosen.bundle, engine.definition), strategyOf(engine)),
      (seq, device) => {
        const at = iso(clock.now());
        rollouts.addDevice(row.id, {
          deviceId,
          desiredSeq: seq,
          assignedAt: at,
          stage,
          previous: previousOf(device, row.model),
          bundleSha256: chosen.bundle.sha256,
          variant: chosen.variant,
          variantReason: chosen.reason,
        });
      },
    );
  }

  /** Persists a status change and its history event (with the stage it happened at) in one transaction. */
  function setState(row: RolloutRow, status: RolloutStatus, state: EngineState, event: StageEventInput): void {
    rollouts.transaction(() => {
      rollouts.setState(row.id, status, state);
      rollouts.addEvent(row.id, iso(clock.now()), withStage(state.stage, event));
    });
    row.status = status;
    row.state = state;
  }

  async function apply(row: RolloutRow, engine: PlannerRollout, actions: readonly RolloutAction[]): Promise<void> {
    const now = clock.now();
    let state = { ...engine.state };
    const paced = createPacedPublisher({ sliceMs: SLICE_MS, window: PUBLISH_WINDOW });
    for (const a of actions) {
      await paced.pace();
      switch (a.kind) {
        case "device-phase":
          rollouts.setPhase(row.id, a.deviceId, a.phase, iso(now));
          break;
        case "device-outcome":
          rollouts.setOutcome(row.id, a.deviceId, a.outcome, a.reason, iso(now));
          if (a.outcome === "failed") {
            rollouts.addEvent(row.id, iso(now), {
              type: "device-failed",
              detail: { deviceId: a.deviceId, reason: a.reason, message: a.message },
            });
          }
          break;
        case "assign":
          // Stored and signed now (assign's synchronous part commits before it publishes); the
          // publishes overlap in a window (paced-publish.ts).
          await paced.add(assign(row, { ...engine, state }, a.deviceId, a.stage));
          break;
        case "start-soak":
          state = { ...state, soakStartedAt: now };
          setState(row, engine.status, state, { type: "soak-started", detail: {} });
          break;
        case "accuracy-verdict":
          state = { ...state, accuracy: a.decision };
          setState(row, engine.status, state, {
            type: "accuracy-decided",
            detail: { verdict: a.decision.verdict, detail: a.decision.detail },
          });
          break;
        case "advance-stage":
          state = { ...state, stage: a.to, stageStartedAt: now, soakStartedAt: null };
          setState(row, "running", state, { type: "stage-advanced", detail: {} });
          break;
        case "complete":
          setState(row, "completed", { ...state, soakStartedAt: null }, { type: "completed", detail: {} });
          deps.governance?.rolloutCompleted({ ...row, ...state, rolloutId: row.id });
          break;
        case "pause":
          log.warn({ rollout: row.id, reason: a.reason }, "rollout paused");
          setState(row, "paused", { ...state, reason: a.reason }, { type: "paused", detail: { reason: a.reason } });
          break;
        case "rollback":
          log.warn({ rollout: row.id, reason: a.reason }, "rollout rolling back");
          setState(
            row,
            "rolling-back",
            { ...state, reason: a.reason },
            { type: "rollback-started", detail: { reason: a.reason } },
          );
          await paced.settle();
          await rollback(row);
          break;
      }
    }
    await paced.drain();
  }

  /** This rollout's bundle still runs beside the device's active version (shadow/ab, not promoted). */
  function sideAssigned(row: RolloutRow, m: MemberRow): boolean {
    return hasSide(currentAssignments(devices.get(m.deviceId)?.desired), row.model, m.bundleSha256);
  }

  /**
   * Every touched device back to what it ran before (`planRollback`): a side version is removed,
   * a replaced active version comes back as a re-release with a higher counter (one re-release per
   * previous bundle). Resumable: devices already handled are skipped, so a restart during
   * `rolling-back` finishes the job. Ignores rate limits and windows on purpose.
   */
  async function rollback(row: RolloutRow): Promise<void> {
    const engine = engineOf(row);
    const members = new Map(rollouts.devices(row.id).map((m) => [m.deviceId, m]));
    const plan = planRollback(
      [...members.values()].map((m) => ({
        deviceId: m.deviceId,
        handled: m.rollbackSha256 !== null,
        sideAssigned: m.rollbackSha256 === null && sideAssigned(row, m),
        previousSha256: m.previous?.sha256 ?? null,
      })),
    );
    const released = new Map<string, BundleRow>();
    let sidesRemoved = 0;
    for (const a of plan) {
      if (a.kind === "skip") continue;
      let next: (prev: Assignment[]) => Assignment[];
      let marker = ROLLBACK_REMOVED;
      if (a.kind === "re-release") {
        const target = released.get(a.previousSha256) ?? (await reRelease(a.previousSha256));
        released.set(a.previousSha256, target);
        next = (prev) => assignmentsForMode(prev, newAssignment(target, engine.definition), { mode: "active" });
        marker = target.sha256;
      } else if (a.kind === "remove-side") {
        next = (prev) => withoutSide(prev, row.model, members.get(a.deviceId)!.bundleSha256);
        sidesRemoved++;
      } else next = (prev) => withoutModel(prev, row.model);
      await publishDesired(a.deviceId, engine, next, (seq) => rollouts.setRollback(row.id, a.deviceId, marker, seq));
    }
    const reReleases = [...released.values()].map(releaseRef);
    setState(row, "rolled-back", engine.state, { type: "rolled-back", detail: { sidesRemoved, reReleases } });
  }

  /**
   * Operator abort; shadow/ab members lose the side assignment (`planAbort`). Status and desired
   * states commit in one transaction before any publish, so a crash cannot leave an aborted rollout
   * with sides nothing removes. The `removed` rollback marker: the device is back on what it ran
   * before, so a later `rollback` skips it rather than re-install that version as a re-release.
   */
  async function abort(row: RolloutRow, reason: string): Promise<void> {
    const engine = engineOf(row);
    const members = rollouts.devices(row.id);
    const shaOf = new Map(members.map((m) => [m.deviceId, m.bundleSha256]));
    const plan = planAbort(
      engine,
      members.map((m) => ({ deviceId: m.deviceId, sideAssigned: m.rollbackSha256 === null && sideAssigned(row, m) })),
    );
    const docs = rollouts.transaction(() => {
      setState(
        row,
        "aborted",
        { ...engine.state, reason },
        { type: "aborted", detail: { by: "operator", sidesRemoved: plan.length } },
      );
      return plan.map((a) => ({
        deviceId: a.deviceId,
        signed: prepareDesired(
          a.deviceId,
          engine,
          (prev) => withoutSide(prev, row.model, shaOf.get(a.deviceId)!),
          (seq) => rollouts.setRollback(row.id, a.deviceId, ROLLBACK_REMOVED, seq),
        ),
      }));
    });
    for (const d of docs) if (d.signed) await send(d.deviceId, d.signed);
  }

  return {
    observe,
    explainVariant: variants.explain,
    setState,
    rollback,
    abort,
    /** One planning step for one rollout: plan from persisted state, apply, persist. */
    async step(row: RolloutRow): Promise<void> {
      if (row.status === "rolling-back") return rollback(row);
      const engine = engineOf(row);
      const planned = planRolloutStep(engine, plannerDevices(row, engine), clock.now());
      const actions = deps.governance ? deps.governance.holdAtCanary(row, planned) : planned;
      if (actions.length > 0) await apply(row, engine, actions);
    },
    /** Re-issues every member's assignment in the current serving mode (promote of shadow/ab). */
    async republishMembers(row: RolloutRow): Promise<void> {
      const engine = engineOf(row);
      for (const m of rollouts.devices(row.id)) {
        if (m.outcome === "failed") continue;
        const bundle = models.bundle(m.bundleSha256);
        if (!bundle) continue;
        await publishDesired(
          m.deviceId,
          engine,
          (prev) => assignmentsForMode(prev, newAssignment(bundle, engine.definition), strategyOf(engine)),
          (seq) => rollouts.setDesiredSeq(row.id, m.deviceId, seq),
        );
      }
    },
  };
}
export type RolloutExecutor = ReturnType<typeof createRolloutExecutor>;
