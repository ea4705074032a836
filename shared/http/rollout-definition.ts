import cron from "node-cron";
import { z } from "zod";
import { DeviceIdSchema, ModelNameSchema, SemverSchema, VariantSchema } from "../schemas/common.js";
import { HealthPolicySchema, SequenceDrainSecondsSchema } from "../schemas/desired-state.js";

/**
 * The rollout definition operators send to `POST /v1/rollouts` (issue 4), part of the HTTP
 * contract (docs/http-api.md). Everything that can
 * be checked without the registry or the device table is checked here, with messages that name
 * the offending field; the server's `fleet-server/rollout/rollout-service.ts` adds the checks against the world (model exists,
 * selector matches devices, gates reachable).
 */

const TagRecordSchema = z.record(z.string().min(1).max(64), z.string().max(256));
/** Tags as `{ key: value }` or as `["key=value", ...]` (the CLI's form). */
const TagsSchema = z.union([
  TagRecordSchema,
  z
    .array(z.string().regex(/^[^=]+=.*$/, "tag must be key=value"))
    .max(32)
    .transform((list) =>
      Object.fromEntries(list.map((t) => [t.slice(0, t.indexOf("=")), t.slice(t.indexOf("=") + 1)])),
    ),
]);

export const SelectorSchema = z
  .strictObject({
    deviceIds: z.array(DeviceIdSchema).max(10_000).optional(),
    tags: TagsSchema.optional(),
    profiles: z.array(z.string().min(1).max(128)).max(100).optional(),
  })
  .refine(
    (t) => (t.deviceIds?.length ?? 0) > 0 || Object.keys(t.tags ?? {}).length > 0 || (t.profiles?.length ?? 0) > 0,
    { message: "selector is empty: give deviceIds, tags or profiles" },
  );
export type Selector = z.infer<typeof SelectorSchema>;

export const GatesSchema = z.strictObject({
  /** Executed devices (verdict known) needed before any gate may pass or trip. */
  minDevices: z.number().int().min(1).default(1),
  /** Install/verify/smoke failures, reverts and deadline misses, each device counted once. */
  maxFailedPercent: z.number().min(0).max(100).default(0),
  /** Median over devices of candidate p95 / baseline p95 (from probation reports). */
  maxP95LatencyRatio: z.number().min(1).optional(),
  /** Pooled candidate errors / requests over devices with enough samples. */
  maxErrorRatePercent: z.number().min(0).max(100).optional(),
  /** Mean shadow agreement over devices with enough samples (shadow strategy only). */
  minShadowAgreementPercent: z.number().min(0).max(100).optional(),
  /** A device's probation summary counts for the metric gates only with this many requests. */
  minRequestsPerDevice: z.number().int().min(1).default(20),
  /**
   * Candidate accuracy from the devices' joined ground-truth feedback against the version they ran
   * before: a one-sided non-inferiority test, decided once (fleet-server/rollout/accuracy-gate.ts,
   * docs/operations.md "Accuracy gate").
   */
  accuracy: z
    .strictObject({
      /** δ: how many accuracy points worse than the baseline the candidate may be. */
      maxDropPercent: z.number().min(0).max(100),
      /** One-sided confidence of the decision. */
      confidence: z.number().min(0.5).max(0.999).default(0.95),
      /** Joined samples per arm (pooled over the stage's devices) before the one look. */
      minSamples: z.number().int().min(30).default(1000),
      /** From the soak's start: without `minSamples` by then the outcome is "insufficient", a stop. */
      maxWaitSeconds: z
        .number()
        .int()
        .min(0)
        .max(30 * 24 * 3600)
        .default(24 * 3600),
    })
    .optional(),
});
export type Gates = z.infer<typeof GatesSchema>;

export const StageSchema = z.strictObject({
  percent: z.number().gt(0).max(100),
  soakSeconds: z
    .number()
    .min(0)
    .max(30 * 24 * 3600)
    .default(0),
  gates: GatesSchema.default(GatesSchema.parse({})),
});
export type Stage = z.infer<typeof StageSchema>;

export const RateSchema = z.union([
  z.strictObject({ maxPerMinute: z.number().int().min(1) }),
  z.strictObject({
    exponential: z.strictObject({
      /** Devices per minute to start with. */
      base: z.number().int().min(1),
      /** Multiplier applied after every `afterSuccesses` passed devices. */
      factor: z.number().gt(1).max(10),
      afterSuccesses: z.number().int().min(1),
      maxPerMinute: z.number().int().min(1).optional(),
    }),
  }),
]);
export type Rate = z.infer<typeof RateSchema>;

export const AbortSchema = z.strictObject({
  /** What a tripped gate or abort threshold does. */
  action: z.enum(["pause", "rollback"]).default("pause"),
  /** Rollout-wide failure threshold, checked at every stage. */
  maxFailedPercent: z.number().min(0).max(100).optional(),
  minExecuted: z.number().int().min(1).default(1),
});

export const DeadlinesSchema = z.strictObject({
  /** From assignment until the device starts installing (staging). Offline devices count too. */
  downloadSeconds: z.number().int().min(1).default(3600),
  /** From staging until probation starts (load, smoke test, swap). */
  installSeconds: z.number().int().min(1).default(900),
  /** From the start of probation until the verdict. */
  probationSeconds: z.number().int().min(1).default(1800),
});

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export const MaintenanceWindowSchema = z.strictObject({
  /** node-cron syntax; each match opens a window (minute resolution). */
  cron: z.string().min(1).max(200).refine(cron.validate, { message: "not a valid node-cron expression" }),
  durationMinutes: z
    .number()
    .int()
    .min(1)
    .max(24 * 60),
  timeZone: z.string().default("UTC").refine(validTimeZone, { message: "unknown IANA time zone" }),
});
export type MaintenanceWindow = z.infer<typeof MaintenanceWindowSchema>;

/** A rollout without a fixed variant: chosen per device from its profile and measurements. */
export const AUTO_VARIANT = "auto";

export const STRATEGIES = ["canary", "all-at-once", "shadow", "ab"] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export const CreateRolloutRequestSchema = z
  .strictObject({
    model: ModelNameSchema,
    version: SemverSchema,
    /**
     * One variant for every device, or `auto` (the default): each device gets the variant its
     * profile prefers among those published that fit its memory budget (`choose-variant.ts`).
     */
    variant: z.union([VariantSchema, z.literal(AUTO_VARIANT)]).default(AUTO_VARIANT),
    target: SelectorSchema,
    strategy: z.enum(STRATEGIES).optional(),
    stages: z.array(StageSchema).min(1).max(20).optional(),
    /** Share of each device's requests on the new version (`ab` only). */
    abWeight: z.number().gt(0).max(1).optional(),
    /**
     * `ab` only: run the split as a bandit (issue 22): Thompson sampling on the devices' feedback
     * reward moves traffic to the more accurate arm, each arm keeping `minSharePercent`; `abWeight`
     * is the share before any feedback.
     */
    abBandit: z.strictObject({ minSharePercent: z.number().min(0).max(50).default(10) }).optional(),
    /** Share of requests mirrored to the shadow (`shadow` only). */
    shadowSampleRate: z.number().gt(0).max(1).optional(),
    rate: RateSchema.optional(),
    abort: AbortSchema.optional(),
    deadlines: DeadlinesSchema.optional(),
    maintenanceWindow: MaintenanceWindowSchema.optional(),
    healthPolicy: HealthPolicySchema.partial().optional(),
    /**
     * Issue 18: how long sequences live on a replaced version may go on there before its host is
     * stopped anyway (their next frames then fail with SEQUENCE_LOST). Carried in each device's
     * assignment; absent: the agent's own default (60 s).
     */
    sequenceDrainSeconds: SequenceDrainSecondsSchema.optional(),
    /** In-flight rollouts of the same model this one replaces (explicit, never implied). */
    supersedes: z.array(z.string().min(1).max(64)).max(20).optional(),
  })
  .superRefine((r, ctx) => {
    const strategy = r.strategy ?? (r.stages ? "canary" : "all-at-once");
    const stages = r.stages ?? [];
    for (let i = 1; i < stages.length; i++) {
      if (stages[i]!.percent <= stages[i - 1]!.percent) {
        ctx.addIssue({
          code: "custom",
          path: ["stages", i, "percent"],
          message: `stage percents must increase: ${stages[i]!.percent} follows ${stages[i - 1]!.percent}`,
        });
      }
    }
    if (strategy === "all-at-once" && stages.length > 1) {
      ctx.addIssue({ code: "custom", path: ["stages"], message: "all-at-once takes at most one stage" });
    }
    if (strategy === "all-at-once" && stages.length === 1 && stages[0]!.percent !== 100) {
      ctx.addIssue({ code: "custom", path: ["stages", 0, "percent"], message: "all-at-once rolls out to 100%" });
    }
    if (strategy === "canary" && stages.length === 0) {
      ctx.addIssue({ code: "custom", path: ["stages"], message: "canary needs stages" });
    }
    if (r.abWeight !== undefined && strategy !== "ab") {
      ctx.addIssue({ code: "custom", path: ["abWeight"], message: "abWeight applies to the ab strategy only" });
    }
    if (r.abBandit !== undefined && strategy !== "ab") {
      ctx.addIssue({ code: "custom", path: ["abBandit"], message: "abBandit applies to the ab strategy only" });
    }
    if (r.shadowSampleRate !== undefined && strategy !== "shadow") {
      ctx.addIssue({ code: "custom", path: ["shadowSampleRate"], message: "shadowSampleRate applies to shadow only" });
    }
    stages.forEach((s, i) => {
      // Only a shadow reports agreement: anywhere else this gate could never pass.
      if (s.gates.minShadowAgreementPercent !== undefined && strategy !== "shadow") {
        ctx.addIssue({
          code: "custom",
          path: ["stages", i, "gates", "minShadowAgreementPercent"],
          message: "minShadowAgreementPercent can only pass with the shadow strategy",
        });
      }
    });
    const probation = r.healthPolicy?.probationSeconds;
    const deadline = r.deadlines?.probationSeconds;
    if (probation !== undefined && deadline !== undefined && deadline <= probation) {
      ctx.addIssue({
        code: "custom",
        path: ["deadlines", "probationSeconds"],
        message: `probation deadline ${deadline}s must exceed healthPolicy.probationSeconds ${probation}s`,
      });
    }
  });
export type CreateRolloutRequest = z.infer<typeof CreateRolloutRequestSchema>;

/**
 * The stored definition, every default applied (fleet-server/rollout/definition.ts
 * `normalizeDefinition`): what the planner works from, what the store decodes the `definition`
 * column with, and what the rollout view shows. `variant` is `auto` or, for definitions stored
 * before per-device variants, `fp32`/`int8`.
 */
export const RolloutDefinitionSchema = z.object({
  model: ModelNameSchema,
  version: SemverSchema,
  variant: z.union([VariantSchema, z.literal(AUTO_VARIANT)]),
  target: z.object({
    deviceIds: z.array(DeviceIdSchema).optional(),
    tags: z.record(z.string(), z.string()).optional(),
    profiles: z.array(z.string()).optional(),
  }),
  strategy: z.enum(STRATEGIES),
  stages: z.array(StageSchema).min(1),
  abWeight: z.number().gt(0).max(1),
  /** Null: a fixed split; stored definitions from before issue 22 have none. */
  abBandit: z
    .object({ minSharePercent: z.number().min(0).max(50) })
    .nullable()
    .default(null),
  shadowSampleRate: z.number().gt(0).max(1),
  rate: RateSchema.nullable(),
  abort: AbortSchema,
  deadlines: DeadlinesSchema,
  maintenanceWindow: MaintenanceWindowSchema.nullable(),
  healthPolicy: HealthPolicySchema,
  /** Null: the agent's default; stored definitions from before issue 18 have none. */
  sequenceDrainSeconds: SequenceDrainSecondsSchema.nullable().default(null),
});
export type StoredRolloutDefinition = z.output<typeof RolloutDefinitionSchema>;
