import { z } from "zod";
import { DeviceIdSchema, ModelNameSchema, SemverSchema, Sha256Schema } from "../schemas/common.js";
import { HealthPolicySchema } from "../schemas/desired-state.js";
import { ProbationReportSchema, UpdateStateSchema } from "../schemas/device-state.js";
import { PreviousRefSchema } from "../schemas/rollout-state.js";
import { defineRoute } from "./contract.js";
import { CreateRolloutRequestSchema, RolloutDefinitionSchema, STRATEGIES } from "./rollout-definition.js";
import { RolloutHistoryEntrySchema } from "./rollout-history.js";

/** Rollout routes: create (JSON or YAML), list, the operator's view, and the operator commands. */

/** A staged rollout's status (the planner's state machine, fleet-server/rollout/planner.ts). */
export const ROLLOUT_STATUSES = [
  "running",
  "paused",
  "completed",
  "aborted",
  "rolling-back",
  "rolled-back",
  "superseded",
] as const;
export const RolloutStatusSchema = z.enum(ROLLOUT_STATUSES);
export type RolloutStatusName = z.infer<typeof RolloutStatusSchema>;

/** A device's state in the view: its update state for the rollout's bundle, collapsed for display. */
export const MemberStateSchema = z.enum([
  "pending",
  "downloading",
  "installing",
  "probation",
  "committed",
  "failed",
  "reverted",
  "removed",
]);

const ErrorSchema = z.object({ code: z.string(), message: z.string() });
const CountSchema = z.number().int().min(0);
/** Devices per display state. */
export const DisplayCountsSchema = z.object({
  total: CountSchema,
  pending: CountSchema,
  downloading: CountSchema,
  installing: CountSchema,
  probation: CountSchema,
  committed: CountSchema,
  failed: CountSchema,
  reverted: CountSchema,
  removed: CountSchema,
});
/** The rollout's counts: per display state, `failed` including reverted, plus `inProgress`. */
export const RolloutCountsSchema = DisplayCountsSchema.extend({ inProgress: CountSchema });

export const RunningNowSchema = z.object({
  version: z.string(),
  variant: z.string(),
  bundle: Sha256Schema,
  /** True when that is this rollout's bundle for the device. */
  thisRollout: z.boolean(),
});

/** One device of the rollout view (fleet-server/rollout/view.ts `memberView`). */
export const RolloutMemberViewSchema = z.looseObject({
  deviceId: DeviceIdSchema,
  /** Stage index (0-based) the device was assigned in. */
  stage: z.number().int().min(0),
  variant: z.string(),
  bundle: Sha256Schema,
  /** Why this variant: `explicit`, or how `variant: auto` chose it. */
  variantReason: z.string(),
  /** Why not the profile's preferred variant, when it is not. */
  variantNote: z.string().optional(),
  state: MemberStateSchema,
  /** The agent's own update state for the bundle. */
  agentState: z.union([UpdateStateSchema, z.literal("pending")]),
  outcome: z.enum(["passed", "failed"]).nullable(),
  reason: z.string().nullable(),
  acknowledged: z.boolean(),
  assignedAt: z.string(),
  /** What the device ran before (to roll back to); null when it ran nothing of the model. */
  previous: PreviousRefSchema.nullable(),
  progress: z.object({ bytes: z.number(), total: z.number() }).optional(),
  error: ErrorSchema.optional(),
  probation: ProbationReportSchema.optional(),
  /** Joined ground truth on this device (issue 22): the rollout's version and the one before it. */
  feedback: z
    .object({
      candidate: z.object({ joined: CountSchema, correct: CountSchema }),
      baseline: z.object({ joined: CountSchema, correct: CountSchema }),
    })
    .optional(),
  /** How a delta for the bundle went (issue 17): `applied` (`bytes` pulled instead of `fullBytes`) or `fallback`. */
  delta: z
    .object({
      outcome: z.enum(["applied", "fallback"]),
      bytes: z.number(),
      fullBytes: z.number(),
      error: ErrorSchema.optional(),
    })
    .optional(),
  rollback: z
    .object({ bundle: Sha256Schema.nullable(), state: MemberStateSchema, error: ErrorSchema.optional() })
    .nullable(),
  /** What the device serves for the model now, beside the verdict. */
  runningNow: RunningNowSchema.nullable(),
  /** Set when the verdict and what the device runs disagree (e.g. committed after a TIMEOUT). */
  note: z.string().optional(),
  updatedAt: z.string(),
});
export type RolloutMemberView = z.infer<typeof RolloutMemberViewSchema>;

/** The current gate evaluation (fleet-server/rollout/gates.ts). */
export const GateEvaluationSchema = z.object({
  executed: CountSchema,
  failed: CountSchema,
  failedPercent: z.number().nullable(),
  p95LatencyRatio: z.number().nullable(),
  latencyDevices: CountSchema,
  pairedLatencyDevices: CountSchema,
  errorRatePercent: z.number().nullable(),
  errorDevices: CountSchema,
  shadowAgreementPercent: z.number().nullable(),
  shadowDevices: CountSchema,
  /**
   * The accuracy gate (issue 22), when the stage has one: pooled joined samples and accuracy per
   * arm, the difference and its one-sided bounds in accuracy points, the verdict (`waiting` until
   * the one look), and whether the verdict was already decided before this evaluation.
   */
  accuracy: z
    .object({
      verdict: z.enum(["waiting", "pass", "fail", "insufficient"]),
      detail: z.string(),
      decided: z.boolean(),
      candidate: z.object({ n: CountSchema, accuracy: z.number().nullable() }),
      baseline: z.object({ n: CountSchema, accuracy: z.number().nullable() }),
      differencePercent: z.number().nullable(),
      lowerPercent: z.number().nullable(),
      upperPercent: z.number().nullable(),
    })
    .nullable()
    .default(null),
  /** A gate is tripped: the rollout must stop (the abort action applies). */
  breached: z.string().nullable(),
  passing: z.boolean(),
  /** Why it is not passing yet, when neither passing nor breached. */
  waitingFor: z.string().nullable(),
});

const StageNowSchema = z.object({
  index: z.number().int().min(0),
  number: z.number().int().min(1),
  of: z.number().int().min(1),
  percent: z.number(),
  soakSeconds: z.number(),
  startedAt: z.string(),
  soakStartedAt: z.string().nullable(),
});

const StrategySchema = z.enum(STRATEGIES);

/** Which devices a rollout targets: every given criterion must hold (ids AND tags AND profiles). */
export const RolloutTargetSchema = z.object({
  deviceIds: z.array(DeviceIdSchema).optional(),
  tags: z.record(z.string(), z.string()).optional(),
  profiles: z.array(z.string()).optional(),
});

/**
 * The operator's view of a rollout (`GET /v1/rollouts/{id}`): the stage, per-stage counts, gates,
 * definition, history and each device.
 */
export const RolloutViewSchema = z.looseObject({
  id: z.string(),
  model: ModelNameSchema,
  version: SemverSchema,
  variant: z.string(),
  bundle: Sha256Schema,
  target: RolloutTargetSchema,
  healthPolicy: HealthPolicySchema,
  createdAt: z.string(),
  status: RolloutStatusSchema,
  strategy: StrategySchema,
  /** Why the rollout is paused, aborted or rolled back. */
  reason: z.string().nullable(),
  servingMode: z.enum(["active", "shadow", "ab"]),
  stage: StageNowSchema,
  stages: z.array(
    z.object({
      index: z.number().int().min(0),
      percent: z.number(),
      soakSeconds: z.number(),
      gates: z.record(z.string(), z.unknown()),
      counts: DisplayCountsSchema,
    }),
  ),
  gates: GateEvaluationSchema,
  /** The stored definition, defaults applied. */
  definition: RolloutDefinitionSchema,
  /** The last 100 events, oldest first; `detail` depends on `type` (shared/http/rollout-history.ts). */
  history: z.array(RolloutHistoryEntrySchema),
  devices: z.array(RolloutMemberViewSchema),
  counts: RolloutCountsSchema,
  /** Delta bundles (issue 17): devices that installed from a delta, fell back, and the bytes saved. */
  delivery: z
    .object({ deltasApplied: z.number().int(), deltaFallbacks: z.number().int(), bytesSaved: z.number().int() })
    .optional(),
  /**
   * Ground truth the rollout's devices joined (issue 22), pooled: the rollout's version against the
   * version each device ran before it, whatever the gates; null when no device reports any.
   */
  feedback: z
    .object({
      devices: CountSchema,
      candidate: z.object({ joined: CountSchema, correct: CountSchema, accuracy: z.number().nullable() }),
      baseline: z.object({ joined: CountSchema, correct: CountSchema, accuracy: z.number().nullable() }),
    })
    .nullable()
    .default(null),
});
export type RolloutView = z.infer<typeof RolloutViewSchema>;

/** One line of `GET /v1/rollouts`. */
export const RolloutSummarySchema = RolloutViewSchema.pick({
  id: true,
  model: true,
  version: true,
  variant: true,
  status: true,
  strategy: true,
  stage: true,
  createdAt: true,
  counts: true,
});
export type RolloutSummary = z.infer<typeof RolloutSummarySchema>;

export const ROLLOUT_COMMANDS = ["pause", "resume", "abort", "rollback", "promote"] as const;
export type RolloutCommand = (typeof ROLLOUT_COMMANDS)[number];

const IdParams = z.object({ id: z.string().min(1).max(64) });

const commandRoute = <const C extends RolloutCommand>(cmd: C, summary: string) =>
  defineRoute({
    operationId: `${cmd}Rollout` as const,
    method: "POST",
    path: `/v1/rollouts/:id/${cmd}` as const,
    tag: "rollouts",
    summary,
    params: IdParams,
    responses: { 200: RolloutViewSchema },
  });

export const rolloutRoutes = {
  createRollout: defineRoute({
    operationId: "createRollout",
    method: "POST",
    path: "/v1/rollouts",
    tag: "rollouts",
    summary: "Start a rollout from a definition (JSON, or the same document as YAML)",
    body: CreateRolloutRequestSchema,
    bodyMediaTypes: ["application/yaml"],
    responses: { 201: RolloutViewSchema },
  }),
  listRollouts: defineRoute({
    operationId: "listRollouts",
    method: "GET",
    path: "/v1/rollouts",
    tag: "rollouts",
    summary: "Every rollout with its status, stage and counts",
    responses: { 200: z.object({ rollouts: z.array(RolloutSummarySchema) }) },
  }),
  getRollout: defineRoute({
    operationId: "getRollout",
    method: "GET",
    path: "/v1/rollouts/:id",
    tag: "rollouts",
    summary: "The operator's view of a rollout: stage, gates, each device, history",
    params: IdParams,
    responses: { 200: RolloutViewSchema },
  }),
  pauseRollout: commandRoute("pause", "Pause a rollout: no new devices are assigned"),
  resumeRollout: commandRoute("resume", "Resume a paused rollout; failures so far stop counting against its gates"),
  abortRollout: commandRoute("abort", "Abort a rollout (shadow/A-B: also takes the side version off the devices)"),
  rollbackRollout: commandRoute("rollback", "Roll every device of the rollout back to what it ran before"),
  promoteRollout: commandRoute("promote", "Skip to the last stage (shadow/A-B: serve the new version)"),
} as const;
