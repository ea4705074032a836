import { z } from "zod";
import { DatatypeSchema } from "./common.js";

/** A tensor's signature in a manifest: dims are numbers, or -1 / a symbolic name for dynamic axes. */
export const TensorSpecSchema = z.object({
  name: z.string().min(1),
  datatype: DatatypeSchema,
  shape: z.array(z.union([z.number().int().min(-1), z.string()])),
});
export type TensorSpec = z.infer<typeof TensorSpecSchema>;

/**
 * A concrete tensor as JSON, in the Open Inference Protocol shape (flattened row-major data).
 * INT64/UINT64 values travel as JSON numbers; values beyond 2^53 are not representable in JSON tensors.
 */
export const JsonTensorSchema = z.object({
  datatype: DatatypeSchema,
  shape: z.array(z.number().int().min(0)),
  data: z.array(z.union([z.number(), z.boolean(), z.string()])),
});
export type JsonTensor = z.infer<typeof JsonTensorSchema>;

export const ToleranceSchema = z.object({
  abs: z.number().min(0).default(1e-4),
  rel: z.number().min(0).default(1e-3),
});

/** samples.json (architecture.md §2): golden inputs with expected outputs, used for the on-device smoke test. */
export const SampleSchema = z.object({
  name: z.string().optional(),
  inputs: z.record(z.string(), JsonTensorSchema),
  outputs: z.record(z.string(), JsonTensorSchema),
  tolerance: ToleranceSchema.default({ abs: 1e-4, rel: 1e-3 }),
});
export type Sample = z.infer<typeof SampleSchema>;

export const SamplesFileSchema = z.object({
  samples: z.array(SampleSchema).min(1).max(64),
});
export type SamplesFile = z.infer<typeof SamplesFileSchema>;

/** What an operator uploads: inputs only; the server runs the model to record outputs. */
export const SampleInputSchema = z.object({
  name: z.string().optional(),
  inputs: z.record(z.string(), JsonTensorSchema),
  tolerance: ToleranceSchema.optional(),
});
export type SampleInput = z.infer<typeof SampleInputSchema>;
