import { z } from "zod";
import { DEFAULT_DRIFT_THRESHOLDS } from "./drift-alerts.js";

/** `telemetry` option of `startFleetServer`: retention and drift alert thresholds (issue 6). */
export const ServerTelemetryConfigSchema = z
  .object({
    /** Records kept at most (oldest received go first). */
    retentionMaxRows: z.number().int().min(1000).default(5_000_000),
    /** Records older than this are deleted. */
    retentionDays: z.number().min(0.001).default(30),
    drift: z
      .object({
        psi: z.number().positive().default(DEFAULT_DRIFT_THRESHOLDS.psi),
        ks: z.number().positive().max(1).default(DEFAULT_DRIFT_THRESHOLDS.ks),
        clearRatio: z.number().positive().max(1).default(DEFAULT_DRIFT_THRESHOLDS.clearRatio),
        minSamples: z.number().int().min(1).default(DEFAULT_DRIFT_THRESHOLDS.minSamples),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});
