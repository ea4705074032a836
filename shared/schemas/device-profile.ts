import { z } from "zod";

/**
 * A device class (architecture.md §5): how to detect it and how to tune onnxruntime sessions on it.
 * Files in device-profiles/*.json; JSON Schema generated from this (device-profiles/schema.json).
 */
export const DeviceProfileSchema = z
  .object({
    $schema: z.string().optional(),
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
    description: z.string(),
    match: z
      .object({
        /** Substrings of /proc/device-tree/model (e.g. "Raspberry Pi 4"). */
        deviceTreeModel: z.array(z.string()).default([]),
        arch: z.array(z.string()).default([]),
        minCores: z.number().int().min(1).optional(),
        minMemoryMB: z.number().int().min(1).optional(),
      })
      .strict(),
    /** Lower wins among profiles that match; generic profiles have high numbers. */
    priority: z.number().int().default(100),
    session: z
      .object({
        intraOpNumThreads: z.number().int().min(0).default(0),
        interOpNumThreads: z.number().int().min(0).default(1),
        executionMode: z.enum(["sequential", "parallel"]).default("sequential"),
        graphOptimizationLevel: z.enum(["disabled", "basic", "extended", "all"]).default("all"),
        enableCpuMemArena: z.boolean().default(true),
        enableMemPattern: z.boolean().default(true),
        executionProviders: z.array(z.string()).default(["cpu"]),
        /** onnxruntime session config entries; values must be strings (ORT 1.30). */
        extra: z.record(z.string(), z.string()).default({}),
      })
      .strict(),
    preferredVariants: z.array(z.enum(["fp32", "int8"])).min(1),
    memoryBudgetMB: z.number().int().min(16),
    maxLoadedModels: z.number().int().min(1).default(2),
    /**
     * Low-power devices (issue 16): stop the host of a serving model nobody has asked for in this
     * many seconds and start it again on the next request, which pays the reload. Absent: never.
     */
    idleUnloadSeconds: z.number().int().min(10).optional(),
    buffers: z
      .object({
        telemetryMaxRows: z.number().int().min(100).default(100_000),
        telemetryMaxBytes: z
          .number()
          .int()
          .min(65_536)
          .default(64 * 1024 * 1024),
      })
      .strict()
      .default({ telemetryMaxRows: 100_000, telemetryMaxBytes: 64 * 1024 * 1024 }),
  })
  .strict();
export type DeviceProfile = z.infer<typeof DeviceProfileSchema>;
