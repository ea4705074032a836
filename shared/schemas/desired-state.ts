import { z } from "zod";
import { DeviceIdSchema, IsoTimeSchema, ModelNameSchema, Sha256Schema } from "./common.js";
import { SignedManifestSchema } from "./manifest.js";
import { envelopeSchema } from "./trust.js";

export const StrategySchema = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("active") }),
  z.object({ mode: z.literal("shadow"), sampleRate: z.number().min(0).max(1).default(1) }),
  z.object({
    mode: z.literal("ab"),
    weight: z.number().min(0).max(1),
    /** Bandit A/B (issue 22): the split follows the feedback reward; `weight` is the start. */
    bandit: z.object({ minShare: z.number().min(0).max(0.5) }).optional(),
  }),
]);

export const HealthPolicySchema = z.object({
  probationSeconds: z.number().min(0).default(30),
  probationRequests: z.number().int().min(0).default(0),
  maxErrorRatePercent: z.number().min(0).max(100).default(5),
  maxP95LatencyRatio: z.number().min(1).default(3),
  maxHostRestarts: z.number().int().min(0).default(2),
  /**
   * Absolute p95 budget of the candidate's model execution time in ms, whatever the previous version
   * did (issue 20 §6: the second check beside the paired ratio). Optional; absent = no absolute budget.
   */
  maxP95LatencyMs: z.number().positive().optional(),
  /**
   * How long a swap may wait for apps' update locks before it proceeds anyway (issue 8). Optional;
   * the agent uses 300 s when absent. The rollout's per-step deadline should exceed it.
   */
  maxLockWaitSeconds: z.number().min(0).optional(),
});
export type HealthPolicy = z.infer<typeof HealthPolicySchema>;

/** Deadline for live sequences on a replaced version (issue 18): whole seconds, at most a day. */
export const SequenceDrainSecondsSchema = z.number().int().min(0).max(86_400);

export const AssignmentSchema = z.object({
  model: ModelNameSchema,
  bundle: z.object({ sha256: Sha256Schema, size: z.number().int().min(1) }),
  releaseCounter: z.number().int().min(1),
  strategy: StrategySchema.default({ mode: "active" }),
  /** The release-signed manifest, carried here so the agent can check compatibility before downloading. */
  manifest: SignedManifestSchema,
  /**
   * A tensor-level delta from the device's committed bundle `base` to this bundle (issue 17, docs/protocol.md
   * "Delta bundles"). Optional: the device may use it instead of downloading `bundle`, which stays the
   * fallback. Its hash is signed here, by the director; what it rebuilds is checked against the
   * release-signed manifest, so a bad delta can cost a download but never install anything unsigned.
   */
  delta: z.object({ sha256: Sha256Schema, size: z.number().int().min(1), base: Sha256Schema }).optional(),
  /**
   * Per-model serving options on the device (issue 8: dynamic batching, response cache). Optional;
   * absent means plain serving. Shape: agent/serving/serving-config.ts (checked by the agent).
   */
  serving: z
    .object({
      dynamicBatching: z
        .object({
          maxBatchSize: z.number().int().min(1).max(1024).optional(),
          preferredBatchSizes: z.array(z.number().int().min(1)).max(16).optional(),
          maxQueueDelayMicros: z.number().int().min(0).max(1_000_000).optional(),
        })
        .optional(),
      cache: z
        .object({ maxEntries: z.number().int().min(1).optional(), maxBytes: z.number().int().min(1024).optional() })
        .optional(),
    })
    .optional(),
  /**
   * How long sequences live on the version this assignment replaces may finish there before its host
   * stops (issue 18, the rollout's `sequenceDrainSeconds`). Optional; absent: the agent's default.
   */
  sequenceDrainSeconds: SequenceDrainSecondsSchema.optional(),
});
export type Assignment = z.infer<typeof AssignmentSchema>;

export const DesiredStateSchema = z.object({
  _type: z.literal("desired"),
  deviceId: DeviceIdSchema,
  seq: z.number().int().min(1),
  issuedAt: IsoTimeSchema,
  expires: IsoTimeSchema,
  assignments: z.array(AssignmentSchema).max(16),
  healthPolicy: HealthPolicySchema.default({
    probationSeconds: 30,
    probationRequests: 0,
    maxErrorRatePercent: 5,
    maxP95LatencyRatio: 3,
    maxHostRestarts: 2,
  }),
  rollout: z
    .object({ id: z.string().min(1).max(64), stage: z.number().int().min(0) })
    .nullable()
    .default(null),
});
export type DesiredState = z.infer<typeof DesiredStateSchema>;
/**
 * The desired-state envelope may carry the root chain beside `signed` (issue 7: "root chain
 * distributed on the retained trust topic and in desired state"), so a device that missed the
 * trust topic still learns a rotation before judging the director's signature. It needs no
 * signature of its own: every root in it is self-authenticating (signed by a threshold of the
 * previous root's keys and of its own, `walkRootChain`).
 */
export const SignedDesiredStateSchema = envelopeSchema(DesiredStateSchema).extend({
  rootChain: z.array(z.unknown()).max(32).optional(),
});
export type SignedDesiredState = z.infer<typeof SignedDesiredStateSchema>;
