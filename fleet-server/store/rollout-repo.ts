import { z } from "zod";
import { RolloutDefinitionSchema, type StoredRolloutDefinition } from "../../shared/http/rollout-definition.js";
import {
  type RolloutEvent,
  RolloutEventSchema,
  RolloutEventTypeSchema,
  type RolloutHistoryEntry,
} from "../../shared/http/rollout-history.js";
import { ROLLOUT_STATUSES, RolloutTargetSchema } from "../../shared/http/rollouts.js";
import { Sha256Schema, VariantSchema } from "../../shared/schemas/common.js";
import { HealthPolicySchema } from "../../shared/schemas/desired-state.js";
import {
  type EngineState,
  EngineStateSchema,
  type MemberPhase,
  MemberPhaseSchema,
  type PreviousRef,
  PreviousRefSchema,
} from "../../shared/schemas/rollout-state.js";
import type { Db } from "./db.js";
import { decodeJson, decodeJsonOrNull, decodeValue } from "./row-codec.js";

/**
 * The `status` column: a planner status. (Migration 2 gave rollouts from before staged rollouts
 * the status `legacy`; no 0.1.0 server ever wrote one, so such a row is corrupt: decisions.md,
 * "Legacy branches removed".)
 */
export const StoredRolloutStatusSchema = z.enum(ROLLOUT_STATUSES);
export type StoredRolloutStatus = z.infer<typeof StoredRolloutStatusSchema>;

export interface RolloutRow {
  id: string;
  model: string;
  version: string;
  variant: string;
  bundleSha256: string;
  target: z.infer<typeof RolloutTargetSchema>;
  healthPolicy: z.infer<typeof HealthPolicySchema>;
  createdAt: string;
  /** The defaulted definition. */
  definition: StoredRolloutDefinition;
  /** Engine status, a column so "which rollouts are active" is one indexed query. */
  status: StoredRolloutStatus;
  /** Engine state besides the status (stage, soak clock, reason, serving mode). */
  state: EngineState;
}

export interface RolloutDeviceRow {
  deviceId: string;
  desiredSeq: number;
  assignedAt: string;
  stage?: number;
  /** What the device ran for the model before this rollout assigned it (for rollback). */
  previous?: PreviousRef | null;
  phase?: MemberPhase;
  phaseSince?: string | null;
  outcome?: "passed" | "failed" | null;
  outcomeReason?: string | null;
  /** Failure acknowledged by an operator's resume: no longer counted by the gates. */
  acknowledged?: boolean;
  rollbackSha256?: string | null;
  /**
   * The bundle this device was assigned: its variant may differ from the rollout's default bundle
   * when the rollout chooses per device (`variant: auto`).
   */
  bundleSha256: string;
  variant: string;
  /** Why this variant (`VariantChoiceReason`, or `explicit` when the rollout fixed one). */
  variantReason: string;
}

interface RawRollout {
  id: string;
  model: string;
  version: string;
  variant: string;
  bundle_sha256: string;
  target: string;
  health_policy: string;
  created_at: string;
  definition: string | null;
  status: string;
  state: string | null;
}
interface RawMember {
  device_id: string;
  desired_seq: number;
  assigned_at: string;
  stage: number;
  previous: string | null;
  phase: string;
  phase_since: string | null;
  outcome: string | null;
  outcome_reason: string | null;
  acknowledged: number;
  rollback_sha256: string | null;
  bundle_sha256: string | null;
  variant: string | null;
  variant_reason: string | null;
}

const JsonValueSchema = z.unknown();
const OutcomeSchema = z.enum(["passed", "failed"]).nullable();
const VariantReasonSchema = z.string().min(1);

const toRow = (r: RawRollout): RolloutRow => {
  const at = (column: string) => ({ table: "rollouts", key: `id=${r.id}`, column });
  return {
    id: r.id,
    model: r.model,
    version: r.version,
    variant: r.variant,
    bundleSha256: r.bundle_sha256,
    target: decodeJson(RolloutTargetSchema, r.target, at("target")),
    healthPolicy: decodeJson(HealthPolicySchema, r.health_policy, at("health_policy")),
    createdAt: r.created_at,
    definition: decodeJson(RolloutDefinitionSchema, r.definition, at("definition")),
    status: decodeValue(StoredRolloutStatusSchema, r.status, at("status")),
    state: decodeJson(EngineStateSchema, r.state, at("state")),
  };
};

const toMember = (rolloutId: string, r: RawMember): Required<RolloutDeviceRow> => {
  const at = (column: string) => ({
    table: "rollout_devices",
    key: `rollout_id=${rolloutId}, device_id=${r.device_id}`,
    column,
  });
  return {
    deviceId: r.device_id,
    desiredSeq: r.desired_seq,
    assignedAt: r.assigned_at,
    stage: r.stage,
    previous: decodeJsonOrNull(PreviousRefSchema, r.previous, at("previous")),
    phase: decodeValue(MemberPhaseSchema, r.phase, at("phase")),
    phaseSince: r.phase_since,
    outcome: decodeValue(OutcomeSchema, r.outcome, at("outcome")),
    outcomeReason: r.outcome_reason,
    acknowledged: r.acknowledged === 1,
    rollbackSha256: r.rollback_sha256,
    // NULL only in members written before migration 5 (never by a 0.1.0 server): corrupt rows now.
    bundleSha256: decodeValue(Sha256Schema, r.bundle_sha256, at("bundle_sha256")),
    variant: decodeValue(VariantSchema, r.variant, at("variant")),
    variantReason: decodeValue(VariantReasonSchema, r.variant_reason, at("variant_reason")),
  };
};

export type MemberRow = ReturnType<typeof toMember>;

export function createRolloutRepo(db: Db) {
  return {
    insert(r: RolloutRow): void {
      db.prepare(
        "INSERT INTO rollouts (id, model, version, variant, bundle_sha256, target, health_policy, created_at, definition, status, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(
        r.id,
        r.model,
        r.version,
        r.variant,
        r.bundleSha256,
        JSON.stringify(r.target),
        JSON.stringify(r.healthPolicy),
        r.createdAt,
        JSON.stringify(r.definition),
        r.status,
        JSON.stringify(r.state),
      );
    },
    setState(id: string, status: StoredRolloutStatus, state: EngineState): void {
      db.prepare("UPDATE rollouts SET status = ?, state = ? WHERE id = ?").run(status, JSON.stringify(state), id);
    },
    addDevice(rolloutId: string, d: RolloutDeviceRow): void {
      db.prepare(
        "INSERT INTO rollout_devices (rollout_id, device_id, desired_seq, assigned_at, stage, previous, phase, phase_since, bundle_sha256, variant, variant_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(
        rolloutId,
        d.deviceId,
        d.desiredSeq,
        d.assignedAt,
        d.stage ?? 0,
        d.previous === undefined || d.previous === null ? null : JSON.stringify(d.previous),
        d.phase ?? "download",
        d.phaseSince ?? d.assignedAt,
        d.bundleSha256,
        d.variant,
        d.variantReason,
      );
    },
    setPhase(rolloutId: string, deviceId: string, phase: MemberPhase, since: string): void {
      db.prepare("UPDATE rollout_devices SET phase = ?, phase_since = ? WHERE rollout_id = ? AND device_id = ?").run(
        phase,
        since,
        rolloutId,
        deviceId,
      );
    },
    /** Outcomes are sticky: the first one recorded wins, so a device is counted once. */
    setOutcome(rolloutId: string, deviceId: string, outcome: "passed" | "failed", reason: string, at: string): void {
      db.prepare(
        "UPDATE rollout_devices SET outcome = ?, outcome_reason = ?, phase = 'done', phase_since = ? WHERE rollout_id = ? AND device_id = ? AND outcome IS NULL",
      ).run(outcome, reason, at, rolloutId, deviceId);
    },
    acknowledgeFailures(rolloutId: string): number {
      return db
        .prepare(
          "UPDATE rollout_devices SET acknowledged = 1 WHERE rollout_id = ? AND outcome = 'failed' AND acknowledged = 0",
        )
        .run(rolloutId).changes;
    },
    setRollback(rolloutId: string, deviceId: string, sha256: string, desiredSeq: number): void {
      db.prepare(
        "UPDATE rollout_devices SET rollback_sha256 = ?, desired_seq = ? WHERE rollout_id = ? AND device_id = ?",
      ).run(sha256, desiredSeq, rolloutId, deviceId);
    },
    setDesiredSeq(rolloutId: string, deviceId: string, desiredSeq: number): void {
      db.prepare("UPDATE rollout_devices SET desired_seq = ? WHERE rollout_id = ? AND device_id = ?").run(
        desiredSeq,
        rolloutId,
        deviceId,
      );
    },
    get(id: string): RolloutRow | null {
      const r = db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id) as RawRollout | undefined;
      return r ? toRow(r) : null;
    },
    list(): RolloutRow[] {
      return (db.prepare("SELECT * FROM rollouts ORDER BY created_at DESC, id").all() as RawRollout[]).map(toRow);
    },
    /** Rollouts in one of `statuses`, oldest first (the order the scheduler plans them in). */
    listByStatus(statuses: readonly string[]): RolloutRow[] {
      const marks = statuses.map(() => "?").join(", ");
      return (
        db
          .prepare(`SELECT * FROM rollouts WHERE status IN (${marks}) ORDER BY created_at, id`)
          .all(...statuses) as RawRollout[]
      ).map(toRow);
    },
    devices(rolloutId: string): MemberRow[] {
      return (
        db
          .prepare("SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY device_id")
          .all(rolloutId) as RawMember[]
      ).map((r) => toMember(rolloutId, r));
    },
    /** Which rollout (in one of `statuses`) holds each device for `model`. */
    holders(model: string, statuses: readonly string[]): { deviceId: string; rolloutId: string }[] {
      const marks = statuses.map(() => "?").join(", ");
      return (
        db
          .prepare(
            `SELECT rd.device_id AS deviceId, r.id AS rolloutId FROM rollout_devices rd
             JOIN rollouts r ON r.id = rd.rollout_id WHERE r.model = ? AND r.status IN (${marks})`,
          )
          .all(model, ...statuses) as { deviceId: string; rolloutId: string }[]
      ).map((x) => ({ deviceId: x.deviceId, rolloutId: x.rolloutId }));
    },
    addEvent(rolloutId: string, ts: string, event: RolloutEvent): void {
      db.prepare("INSERT INTO rollout_events (rollout_id, ts, type, detail) VALUES (?, ?, ?, ?)").run(
        rolloutId,
        ts,
        event.type,
        JSON.stringify(event.detail),
      );
    },
    /** The last `limit` events, oldest first; each `detail` decoded with its kind's schema (shared/http/rollout-history.ts). */
    events(rolloutId: string, limit: number): RolloutHistoryEntry[] {
      return (
        db
          .prepare("SELECT seq, ts, type, detail FROM rollout_events WHERE rollout_id = ? ORDER BY seq DESC LIMIT ?")
          .all(rolloutId, limit) as { seq: number; ts: string; type: string; detail: string }[]
      )
        .map((r) => {
          const at = (column: string) => ({
            table: "rollout_events",
            key: `rollout_id=${rolloutId}, seq=${r.seq}`,
            column,
          });
          const type = decodeValue(RolloutEventTypeSchema, r.type, at("type"));
          const detail = decodeJson(JsonValueSchema, r.detail, at("detail"));
          return { seq: r.seq, ts: r.ts, ...decodeValue(RolloutEventSchema, { type, detail }, at("detail")) };
        })
        .reverse();
    },
    transaction<T>(fn: () => T): T {
      return db.transaction(fn)();
    },
  };
}
export type RolloutRepo = ReturnType<typeof createRolloutRepo>;
