import { z } from "zod";
import {
  DeviceIdSchema,
  ErrorPayloadSchema,
  IsoTimeSchema,
  ModelNameSchema,
  SemverSchema,
  Sha256Schema,
  VariantSchema,
} from "./common.js";

/** Agent update state machine (architecture.md §5). Persisted on the device; reported to the server. */
export const UPDATE_STATES = [
  "idle",
  "verifying",
  "downloading",
  "staging",
  "loading",
  "smoke-testing",
  "swapping",
  "probation",
  "committed",
  "failed",
  "reverting",
  "reverted",
] as const;
export const UpdateStateSchema = z.enum(UPDATE_STATES);
export type UpdateState = z.infer<typeof UpdateStateSchema>;

export const InstalledRefSchema = z.object({
  version: SemverSchema,
  variant: VariantSchema,
  sha256: Sha256Schema,
  releaseCounter: z.number().int().min(1),
});
export type InstalledRef = z.infer<typeof InstalledRefSchema>;

/**
 * What a device measured for one model version over a window (probation, or the committed
 * version's baseline). The rollout gates judge these per device (issue 4), so they travel in
 * `reported` and in `probation.verdict` events without waiting for the telemetry pipeline.
 */
export const HealthSummarySchema = z.object({
  version: SemverSchema,
  sha256: Sha256Schema,
  requests: z.number().int().min(0),
  errors: z.number().int().min(0),
  nonFinite: z.number().int().min(0),
  p50Ms: z.number().min(0).nullable(),
  p95Ms: z.number().min(0).nullable(),
  hostRestarts: z.number().int().min(0),
  rssBytes: z.number().int().min(0).nullable(),
  /** Share of shadow comparisons that agreed, when the version ran as a shadow. */
  shadowAgreementPercent: z.number().min(0).max(100).nullable().default(null),
});
export type HealthSummary = z.infer<typeof HealthSummarySchema>;

export const ProbationVerdictSchema = z.enum(["pending", "passed", "failed"]);

/**
 * Calibration pairs a paired latency ratio needs before anyone judges by it: the agent's probation
 * gate and the fleet server's rollout gate (issue 20 §6).
 */
export const MIN_LATENCY_PAIRS = 15;

/** The probation of a candidate: running, or its final verdict with the reason code when it failed. */
export const ProbationReportSchema = z.object({
  verdict: ProbationVerdictSchema,
  /** Error code of the failed check (e.g. SMOKE_TEST_FAILED, HOST_CRASHED, LATENCY_REGRESSION). */
  reason: z.string().optional(),
  message: z.string().optional(),
  startedAt: IsoTimeSchema,
  endedAt: IsoTimeSchema.optional(),
  candidate: HealthSummarySchema,
  /** The previously committed version over the same kind of window; null on a first install. */
  baseline: HealthSummarySchema.nullable(),
  /**
   * Candidate vs previous version on back-to-back calibration runs (issue 20 §6), when the previous
   * host stayed warm: what the latency gate judged. Optional (absent without a warm previous host).
   */
  pairedLatency: z
    .object({
      pairs: z.number().int().min(0),
      ratio: z.number().min(0).nullable(),
      ratioLow: z.number().min(0).nullable(),
      candidateP50Ms: z.number().min(0).nullable(),
      previousP50Ms: z.number().min(0).nullable(),
      candidateP95Ms: z.number().min(0).nullable(),
      previousP95Ms: z.number().min(0).nullable(),
    })
    .optional(),
});
export type ProbationReport = z.infer<typeof ProbationReportSchema>;

/**
 * A side candidate (issue 4/8 `shadow` / `ab`) running beside the model's active version. `state`
 * uses the update machine's names: pipeline steps while installing, `committed` once running
 * beside the active version, `failed` with `error`. `health` is measured since it started running;
 * `shadowAgreementPercent` there is what the rollout gate `minShadowAgreementPercent` judges.
 * `baseline` is the active version over the same window (A/B control arm).
 */
export const ReportedSideSchema = z.object({
  mode: z.enum(["shadow", "ab"]),
  version: SemverSchema,
  sha256: Sha256Schema,
  state: UpdateStateSchema,
  health: HealthSummarySchema,
  baseline: HealthSummarySchema.nullable().default(null),
  error: ErrorPayloadSchema.optional(),
  /** A bandit A/B split (issue 22): the candidate's current share of requests on this device. */
  banditWeight: z.number().min(0).max(1).optional(),
});
export type ReportedSide = z.infer<typeof ReportedSideSchema>;

/** Classification feedback counts of one version (and arm) on one device (issue 22). */
export const FeedbackFiguresSchema = z.object({
  version: SemverSchema,
  arm: z.string().max(32).nullable(),
  joined: z.number().int().min(0),
  correct: z.number().int().min(0),
  /** Regression feedback: target elements compared, and their mean absolute and root-mean-square error. */
  regression: z.object({ count: z.number().int().min(1), mae: z.number().min(0), rmse: z.number().min(0) }).optional(),
});
export type FeedbackFigures = z.infer<typeof FeedbackFiguresSchema>;

/**
 * What serving one version cost on one device since its agent started (issue 22, docs/operations.md
 * "Cost per prediction"): successful runs, the host CPU attributed to them, and the host's resident
 * memory (time-weighted mean and maximum of periodic samples; null before the first sample).
 */
export const CostFiguresSchema = z.object({
  version: SemverSchema,
  predictions: z.number().int().min(0),
  cpuSeconds: z.number().min(0),
  rssBytes: z.number().int().min(0).nullable(),
  rssMaxBytes: z.number().int().min(0).nullable(),
});
export type CostFigures = z.infer<typeof CostFiguresSchema>;

export const ReportedModelSchema = z.object({
  model: ModelNameSchema,
  state: UpdateStateSchema,
  committed: InstalledRefSchema.nullable(),
  candidate: InstalledRefSchema.nullable(),
  /** Download progress while `downloading`. */
  progress: z.object({ bytes: z.number().int().min(0), total: z.number().int().min(0) }).optional(),
  error: ErrorPayloadSchema.optional(),
  rolloutId: z.string().nullable().default(null),
  /** The current or last probation of this model on the device (issue 3/4). */
  probation: ProbationReportSchema.optional(),
  /**
   * Set while a swap waits for apps' update locks (issue 8): until when at most (the rollout's
   * lock deadline), and how many locks are held. Optional; absent when nothing waits.
   */
  deferring: z
    .object({
      reason: z.literal("update-lock"),
      since: IsoTimeSchema,
      until: IsoTimeSchema,
      locks: z.number().int().min(0),
    })
    .optional(),
  /** The side candidate of this model, when the desired state assigns one (optional field). */
  side: ReportedSideSchema.optional(),
  /**
   * Ground-truth feedback joined to this model's predictions since the agent started (issue 22),
   * per version and A/B arm: what the fleet's accuracy gate pools. Optional; absent with none.
   */
  feedback: z.array(FeedbackFiguresSchema).max(16).optional(),
  /** Cost per version on this device (issue 22, cost per prediction). Optional; absent before any run. */
  cost: z.array(CostFiguresSchema).max(16).optional(),
});
export type ReportedModel = z.infer<typeof ReportedModelSchema>;

/**
 * A local storage fault on the device (issue 20 §2): which part of the agent met it, the error
 * (`DISK_FULL`, `STORAGE_READ_ONLY`, `STORAGE_FAILED`), the path and free bytes when known.
 */
export const StorageFaultSchema = z.object({
  /** `agent-db`, `telemetry-db` (running in memory meanwhile), or `updates` (a download or extraction). */
  area: z.string().min(1).max(32),
  error: ErrorPayloadSchema,
  path: z.string().max(4096).nullable(),
  freeBytes: z.number().int().min(0).nullable(),
  since: IsoTimeSchema,
});
export type StorageFault = z.infer<typeof StorageFaultSchema>;

/** The device's storage as `reported` shows it (absent only from an agent built without a storage monitor, as in tests). */
export const ReportedStorageSchema = z.object({
  faults: z.array(StorageFaultSchema).max(8),
  /** Telemetry records lost on the device since the agent started, by reason (ring_full, commit_failed, ...). */
  telemetryDropped: z.record(z.string().max(32), z.number().int().min(0)),
  /** Telemetry records accepted while the ring ran in memory (not durable until acked), since start. */
  telemetryVolatile: z.number().int().min(0),
});
export type ReportedStorage = z.infer<typeof ReportedStorageSchema>;

/** `fleet/v1/d/{id}/reported` (retained): the device's current truth. */
export const ReportedStateSchema = z.object({
  deviceId: DeviceIdSchema,
  agentVersion: SemverSchema,
  profile: z.string(),
  arch: z.string(),
  ts: IsoTimeSchema,
  lastDesiredSeq: z.number().int().min(0),
  models: z.array(ReportedModelSchema).max(16),
  storage: ReportedStorageSchema.optional(),
});
export type ReportedState = z.infer<typeof ReportedStateSchema>;

/** `fleet/v1/d/{id}/events`: one update lifecycle transition. */
export const UpdateEventSchema = z.object({
  type: z.literal("update.transition"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  /** Per-device monotonically increasing event number, for de-duplication. */
  eventSeq: z.number().int().min(0),
  model: ModelNameSchema.nullable(),
  bundle: Sha256Schema.nullable(),
  rolloutId: z.string().nullable(),
  from: UpdateStateSchema,
  to: UpdateStateSchema,
  error: ErrorPayloadSchema.optional(),
});
/**
 * `update.delta` (issue 17): the device tried a delta for `bundle`: `applied` (rebuilt and verified; `bytes`
 * downloaded instead of `fullBytes`) or `fallback` (the full bundle follows; `error` says why).
 */
export const DeltaEventSchema = z.object({
  type: z.literal("update.delta"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  model: ModelNameSchema,
  bundle: Sha256Schema,
  delta: Sha256Schema,
  outcome: z.enum(["applied", "fallback"]),
  bytes: z.number().int().min(0),
  fullBytes: z.number().int().min(0),
  error: ErrorPayloadSchema.optional(),
});
export const DesiredRejectedEventSchema = z.object({
  type: z.literal("desired.rejected"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  seq: z.number().int().nullable(),
  error: ErrorPayloadSchema,
});
/** `probation.verdict`: emitted once when a candidate's probation ends, pass or fail. */
export const ProbationEventSchema = z.object({
  type: z.literal("probation.verdict"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  model: ModelNameSchema,
  bundle: Sha256Schema,
  rolloutId: z.string().nullable(),
  report: ProbationReportSchema,
});
/** `storage.fault`: a storage fault appeared (`fault`) or cleared (`fault: null`) in `area` (issue 20 §2). */
export const StorageEventSchema = z.object({
  type: z.literal("storage.fault"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  area: z.string().min(1).max(32),
  fault: StorageFaultSchema.nullable(),
});
/**
 * `concept.drift` (issue 22): the error rate of a version's joined feedback rose, by the agent's
 * Page-Hinkley test (agent/feedback/page-hinkley.ts), with the figures that triggered it.
 */
export const ConceptDriftEventSchema = z.object({
  type: z.literal("concept.drift"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  model: ModelNameSchema,
  version: z.string().min(1).max(64),
  /** Joined predictions the test had seen, the error rate over them, and since the change began. */
  samples: z.number().int().min(0),
  errorRateBefore: z.number().min(0).max(1),
  errorRateRecent: z.number().min(0).max(1),
  recentSamples: z.number().int().min(0),
  statistic: z.number(),
  threshold: z.number(),
});
export const DeviceEventSchema = z.discriminatedUnion("type", [
  UpdateEventSchema,
  DesiredRejectedEventSchema,
  ProbationEventSchema,
  StorageEventSchema,
  ConceptDriftEventSchema,
  DeltaEventSchema,
]);
export type DeviceEvent = z.infer<typeof DeviceEventSchema>;

export const PresenceSchema = z.enum(["online", "offline"]);
