import { z } from "zod";
import { DeviceIdSchema, ModelNameSchema, SemverSchema } from "../schemas/common.js";
import { defineRoute } from "./contract.js";

/**
 * Governance routes (issue 21): a model version's lifecycle stage, approvals and refusals by
 * operators, the per-model approval policy, and the devices still running versions on their way
 * out. docs/operations.md "Lifecycle and approvals" describes the rules.
 */

/** `candidate → approved → production → deprecated → retired` (fleet-server/registry/lifecycle.ts holds the table). */
export const LIFECYCLE_STAGES = ["candidate", "approved", "production", "deprecated", "retired"] as const;
export const LifecycleStageSchema = z.enum(LIFECYCLE_STAGES);
export type LifecycleStage = z.infer<typeof LifecycleStageSchema>;

/** Who may ask for a stage change: an operator's command, the approvals reaching the policy, or a rollout. */
export const StageCauseSchema = z.enum(["command", "approvals", "rollout"]);
export type StageCause = z.infer<typeof StageCauseSchema>;

/** What an unapproved version may reach when the policy names no share: 10 % of a rollout's target. */
export const DEFAULT_MAX_UNAPPROVED_PERCENT = 10;

export const ApprovalPolicySchema = z.strictObject({
  /** Distinct operators (tokens), never the pusher, who must approve a version; 0 turns the gate off. */
  requiredApprovals: z.number().int().min(0).max(10),
  /** Highest stage percent of a rollout of an unapproved version (the canary share). */
  maxUnapprovedPercent: z.number().gt(0).max(100).default(DEFAULT_MAX_UNAPPROVED_PERCENT),
});
export type ApprovalPolicy = z.infer<typeof ApprovalPolicySchema>;

export const PolicyViewSchema = z.object({
  model: ModelNameSchema,
  requiredApprovals: z.number().int().min(0),
  maxUnapprovedPercent: z.number(),
  /** Null while the model has no policy of its own (no approvals required). */
  updatedAt: z.string().nullable(),
  updatedBy: z.string().nullable(),
});
export type PolicyView = z.infer<typeof PolicyViewSchema>;

export const ReviewSchema = z.object({
  actor: z.string(),
  decision: z.enum(["approve", "refuse"]),
  comment: z.string(),
  at: z.string(),
  /** False for a review that does not count toward the policy (an earlier one superseded by the same actor). */
  current: z.boolean(),
});

export const StageEventSchema = z.object({
  from: LifecycleStageSchema,
  to: LifecycleStageSchema,
  cause: StageCauseSchema,
  actor: z.string(),
  comment: z.string(),
  at: z.string(),
});

export const GovernanceViewSchema = z.object({
  name: ModelNameSchema,
  version: SemverSchema,
  stage: LifecycleStageSchema,
  /** The token that registered the version; null for versions registered before governance existed. */
  pushedBy: z.string().nullable(),
  policy: PolicyViewSchema,
  /** Distinct actors whose latest review approves (the pusher never counts). */
  approvedBy: z.array(z.string()),
  /** Distinct actors whose latest review refuses: any one holds the version back. */
  refusedBy: z.array(z.string()),
  /** True once the policy is met (approvals reached, no standing refusal) or no approvals are required. */
  approved: z.boolean(),
  reviews: z.array(ReviewSchema),
  history: z.array(StageEventSchema),
});
export type GovernanceView = z.infer<typeof GovernanceViewSchema>;

const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });
export const ReviewRequestSchema = z.strictObject({ comment: z.string().min(1).max(4096) });
export const SetStageRequestSchema = z.strictObject({
  stage: LifecycleStageSchema,
  comment: z.string().max(4096).default(""),
});

export const StaleDeviceSchema = z.object({
  deviceId: DeviceIdSchema,
  model: ModelNameSchema,
  version: SemverSchema,
  stage: z.enum(["deprecated", "retired"]),
  /** `active`: the committed version; `shadow`/`ab`: a side version beside it. */
  slot: z.enum(["active", "shadow", "ab"]),
});
export const StaleDevicesSchema = z.object({ devices: z.array(StaleDeviceSchema) });

export const governanceRoutes = {
  getVersionGovernance: defineRoute({
    operationId: "getVersionGovernance",
    method: "GET",
    path: "/v1/models/:name/versions/:version/governance",
    tag: "governance",
    summary: "A version's lifecycle stage, pusher, approval policy, reviews and stage history",
    params: VersionParams,
    responses: { 200: GovernanceViewSchema },
  }),
  setVersionStage: defineRoute({
    operationId: "setVersionStage",
    method: "POST",
    path: "/v1/models/:name/versions/:version/stage",
    tag: "governance",
    summary: "Move a version to another lifecycle stage (STAGE_TRANSITION_INVALID when the table forbids it)",
    params: VersionParams,
    body: SetStageRequestSchema,
    responses: { 200: GovernanceViewSchema },
  }),
  approveVersion: defineRoute({
    operationId: "approveVersion",
    method: "POST",
    path: "/v1/models/:name/versions/:version/approvals",
    tag: "governance",
    summary: "Approve a version (never its pusher); enough distinct approvers move it to approved",
    params: VersionParams,
    body: ReviewRequestSchema,
    responses: { 200: GovernanceViewSchema },
  }),
  refuseVersion: defineRoute({
    operationId: "refuseVersion",
    method: "POST",
    path: "/v1/models/:name/versions/:version/refusals",
    tag: "governance",
    summary: "Refuse a version with a comment: it stays unapproved until that operator approves",
    params: VersionParams,
    body: ReviewRequestSchema,
    responses: { 200: GovernanceViewSchema },
  }),
  getApprovalPolicy: defineRoute({
    operationId: "getApprovalPolicy",
    method: "GET",
    path: "/v1/models/:name/approval-policy",
    tag: "governance",
    summary: "The model's approval policy (requiredApprovals 0 when it has none)",
    params: z.object({ name: ModelNameSchema }),
    responses: { 200: PolicyViewSchema },
  }),
  setApprovalPolicy: defineRoute({
    operationId: "setApprovalPolicy",
    method: "POST",
    path: "/v1/models/:name/approval-policy",
    tag: "governance",
    summary: "Set the model's approval policy (admin): required approvals and the canary share",
    params: z.object({ name: ModelNameSchema }),
    body: ApprovalPolicySchema,
    responses: { 200: PolicyViewSchema },
  }),
  listStaleDevices: defineRoute({
    operationId: "listStaleDevices",
    method: "GET",
    path: "/v1/model-lifecycle/stale-devices",
    tag: "governance",
    summary: "Devices still running a deprecated or retired version (active or side), optionally of one model",
    query: z.object({ model: ModelNameSchema.optional() }),
    responses: { 200: StaleDevicesSchema },
  }),
} as const;
