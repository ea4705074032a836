import { z } from "zod";
import { DeviceIdSchema, SemverSchema, Sha256Schema } from "../schemas/common.js";
import { EngineStateSchema } from "../schemas/rollout-state.js";
import { STRATEGIES } from "./rollout-definition.js";

/**
 * A rollout's history (the `rollout_events` table, `history` in `GET /v1/rollouts/{id}`): one
 * schema per kind of event, so the store decodes each row's `detail` by its `type` and the OpenAPI
 * document says what every kind carries (issue 23: the detail used to be an untyped record).
 */

const StageIndexSchema = z.number().int().min(0);
const CountSchema = z.number().int().min(0);

/** Who stopped or turned back the rollout: an operator's command, or the planner with its reason (a gate, a deadline). */
const ByOperatorSchema = z.strictObject({ stage: StageIndexSchema, by: z.literal("operator") });
const ByPlannerSchema = z.strictObject({ stage: StageIndexSchema, reason: z.string() });

/** A bundle released again under a new counter by a rollback (fleet-server/registry/re-release.ts). */
export const ReReleaseRefSchema = z.strictObject({
  sha256: Sha256Schema,
  version: SemverSchema,
  releaseCounter: z.number().int().min(1),
});

const event = <const T extends string, D extends z.ZodType>(type: T, detail: D) =>
  z.object({ type: z.literal(type), detail });

/** Kinds written with the stage the rollout was at (`detail.stage`, 0-based). */
const STAGE_EVENTS = [
  event("soak-started", z.strictObject({ stage: StageIndexSchema })),
  /** The accuracy gate's one decision for the stage (issue 22); `detail` has the figures in words. */
  event(
    "accuracy-decided",
    z.strictObject({ stage: StageIndexSchema, verdict: z.enum(["pass", "fail", "insufficient"]), detail: z.string() }),
  ),
  event("stage-advanced", z.strictObject({ stage: StageIndexSchema })),
  event("completed", z.strictObject({ stage: StageIndexSchema })),
  event("paused", z.union([ByOperatorSchema, ByPlannerSchema])),
  /** `acknowledged`: failed devices that stopped counting against the gates. */
  event("resumed", z.strictObject({ stage: StageIndexSchema, acknowledged: CountSchema })),
  event("rollback-started", z.union([ByOperatorSchema, ByPlannerSchema])),
  /** `reReleases`: previous versions released again; empty when only side versions were removed. */
  event(
    "rolled-back",
    z.strictObject({ stage: StageIndexSchema, sidesRemoved: CountSchema, reReleases: z.array(ReReleaseRefSchema) }),
  ),
  event("aborted", z.strictObject({ stage: StageIndexSchema, by: z.literal("operator"), sidesRemoved: CountSchema })),
  /** `from`: where the rollout was before the operator skipped to the last stage. */
  event(
    "promoted",
    z.strictObject({
      stage: StageIndexSchema,
      from: z.strictObject({ stage: StageIndexSchema, servingMode: EngineStateSchema.shape.servingMode }),
      acknowledged: CountSchema,
    }),
  ),
] as const;

export const RolloutEventSchema = z.discriminatedUnion("type", [
  /** `stages`: how many stages the definition has. */
  event("created", z.strictObject({ strategy: z.enum(STRATEGIES), stages: z.number().int().min(1) })),
  /** `by`: the rollout that replaced this one. */
  event("superseded", z.strictObject({ by: z.string().min(1) })),
  /** A member's failure as the planner recorded it (`reason` is an error code or a probation reason). */
  event("device-failed", z.strictObject({ deviceId: DeviceIdSchema, reason: z.string(), message: z.string() })),
  ...STAGE_EVENTS,
]);
export type RolloutEvent = z.infer<typeof RolloutEventSchema>;
const EVENT_TYPES: ReadonlySet<string> = new Set(RolloutEventSchema.options.map((o) => o.shape.type.value));
/** The `type` column: one of the kinds above. */
export const RolloutEventTypeSchema = z.string().refine((t) => EVENT_TYPES.has(t), "is not a known rollout event type");

/** One entry of a rollout's history: its sequence number and time, and the event. */
export const RolloutHistoryEntrySchema = z.object({ seq: z.number().int(), ts: z.string() }).and(RolloutEventSchema);
export type RolloutHistoryEntry = z.infer<typeof RolloutHistoryEntrySchema>;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type StageEvent = z.infer<(typeof STAGE_EVENTS)[number]>;
/** A stage event as the executor states it; `withStage` adds the rollout's current stage. */
export type StageEventInput = StageEvent extends infer E
  ? E extends StageEvent
    ? { type: E["type"]; detail: DistributiveOmit<E["detail"], "stage"> }
    : never
  : never;

/** The event with `detail.stage` set, checked against its kind's schema. */
export function withStage(stage: number, e: StageEventInput): RolloutEvent {
  return RolloutEventSchema.parse({ type: e.type, detail: { ...e.detail, stage } });
}
