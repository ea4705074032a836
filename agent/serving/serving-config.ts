import { z } from "zod";

/**
 * Per-model serving options (issue 8). They travel in the desired state's assignment
 * (`AssignmentSchema.serving`, optional) so an operator sets them per rollout; the agent has no
 * second source, so what a device does is always what its signed desired state says.
 */
export const DynamicBatchingSchema = z
  .object({
    maxBatchSize: z.number().int().min(1).max(1024).default(8),
    preferredBatchSizes: z.array(z.number().int().min(1)).max(16).default([]),
    maxQueueDelayMicros: z.number().int().min(0).max(1_000_000).default(500),
  })
  .strict();

export const ResponseCacheSchema = z
  .object({
    maxEntries: z.number().int().min(1).max(100_000).default(1024),
    maxBytes: z
      .number()
      .int()
      .min(1024)
      .default(16 * 1024 * 1024),
  })
  .strict();

export const ServingConfigSchema = z
  .object({
    dynamicBatching: DynamicBatchingSchema.optional(),
    cache: ResponseCacheSchema.optional(),
  })
  .strict();
export type ServingConfig = z.infer<typeof ServingConfigSchema>;
