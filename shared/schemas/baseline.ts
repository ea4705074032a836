import { z } from "zod";

/**
 * `baseline.json` inside a bundle (architecture.md §2): statistics of the training/validation data that
 * drift is measured against. Each feature is one scalar stream taken from one input or output
 * tensor, binned on fixed edges so device windows and the baseline are directly comparable.
 *
 * - `reduce` turns a tensor into samples: `values` = every element is a sample; `mean`, `rms`,
 *   `min`, `max` = one sample per inference; `argmax` = the index of the largest element (a
 *   categorical feature such as a predicted class).
 * - `edges` (k+1 strictly increasing numbers) define k bins; values below the first edge count in
 *   the first bin and values above the last in the last bin (open-ended tails), so every sample
 *   lands somewhere. Categorical features list `edges` as class boundaries (e.g. 0..C) too.
 * - `counts` are the baseline's samples per bin (any non-negative scale; normalised on use).
 */
export const BaselineFeatureSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_.:-]+$/),
    source: z.enum(["input", "output"]),
    tensor: z.string().min(1).max(128),
    reduce: z.enum(["values", "mean", "rms", "min", "max", "argmax"]).default("values"),
    kind: z.enum(["continuous", "categorical"]).default("continuous"),
    edges: z.array(z.number().finite()).min(2).max(257),
    counts: z.array(z.number().min(0)).min(1).max(256),
  })
  .strict()
  .refine((f) => f.counts.length === f.edges.length - 1, "counts must have one entry per bin (edges.length - 1)")
  .refine((f) => f.edges.every((e, i) => i === 0 || e > f.edges[i - 1]!), "edges must be strictly increasing")
  .refine((f) => f.counts.some((c) => c > 0), "counts must not be all zero");
export type BaselineFeature = z.infer<typeof BaselineFeatureSchema>;

export const BaselineSchema = z
  .object({
    version: z.literal(1),
    /** Where the statistics came from (dataset hash, split), for lineage; free-form. */
    source: z.string().max(512).optional(),
    features: z.array(BaselineFeatureSchema).min(1).max(64),
  })
  .strict()
  .refine((b) => new Set(b.features.map((f) => f.name)).size === b.features.length, "feature names must be unique");
export type Baseline = z.infer<typeof BaselineSchema>;
export type BaselineInput = z.input<typeof BaselineSchema>;
