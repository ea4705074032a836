import cron from "node-cron";
import { z } from "zod";
import { TELEMETRY_MAX_BATCH_BYTES } from "../../shared/schemas/telemetry.js";

/**
 * `telemetry` in the agent config. Caps from the device profile (`buffers.telemetryMaxRows`,
 * `telemetryMaxBytes`) always apply; `maxRows`/`maxBytes` here can only tighten them.
 */
export const TelemetryConfigSchema = z
  .object({
    /** `full`: a record is fsynced before the request that produced it is answered (survives power loss). `normal`: committed every `commitIntervalMs`, WAL synchronous=NORMAL. */
    durability: z.enum(["full", "normal"]).default("full"),
    commitIntervalMs: z.number().int().min(10).max(10_000).default(200),
    /** node-cron expression (seconds field allowed) for scheduled flushes; also flushed on reconnect and on demand. */
    flushCron: z
      .string()
      .min(1)
      .refine(cron.validate, { message: "not a valid node-cron expression" })
      .default("*/10 * * * * *"),
    maxRows: z.number().int().min(10).optional(),
    maxBytes: z.number().int().min(65_536).optional(),
    batchMaxBytes: z.number().int().min(4096).max(TELEMETRY_MAX_BATCH_BYTES).default(TELEMETRY_MAX_BATCH_BYTES),
    batchMaxRecords: z.number().int().min(1).max(5000).default(2000),
    /** Batches in flight before waiting for acks. */
    window: z.number().int().min(1).max(16).default(4),
    ackTimeoutMs: z.number().int().min(100).default(15_000),
    /** Share of API inferences whose tensors are captured (truncated to 4096 elements). */
    captureRate: z.number().min(0).max(1).default(0),
    drift: z
      .object({
        window: z.number().int().min(10).max(1_000_000).default(5000),
        minSamples: z.number().int().min(1).default(200),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});
export type TelemetryConfig = z.infer<typeof TelemetryConfigSchema>;
