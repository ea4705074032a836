import { z } from "zod";
import { IsoTimeSchema, ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "./common.js";
import { QuantizationReportSchema } from "./quantization-report.js";
import { SequenceSpecSchema } from "./sequence.js";
import { TensorSpecSchema } from "./tensor.js";
import { envelopeSchema } from "./trust.js";

/** Paths inside a bundle: plain relative names, no traversal, no backslashes or NUL (architecture.md §2). */
export const BundlePathSchema = z
  .string()
  .min(1)
  .max(255)
  .refine(
    (p) =>
      !p.startsWith("/") &&
      !p.includes("\\") &&
      !p.includes("\0") &&
      !p.split("/").some((seg) => seg === ".." || seg === "." || seg === ""),
    "bundle path must be relative, without '..', '.', empty segments, backslashes or NUL",
  );

export const ManifestFileSchema = z.object({
  path: BundlePathSchema,
  size: z.number().int().min(0),
  sha256: Sha256Schema,
});
export type ManifestFile = z.infer<typeof ManifestFileSchema>;

export const CompatibilitySchema = z.object({
  minAgentVersion: SemverSchema.optional(),
  /** Node-style arch names (`x64`, `arm64`); empty = any. */
  arch: z.array(z.string()).default([]),
  minMemoryMB: z.number().int().min(0).default(0),
  executionProviders: z.array(z.string()).default(["cpu"]),
});

/**
 * Where a model version came from (issue 21, docs/operations.md "Lineage"): given at push, signed into
 * every variant's manifest, so a device and an auditor can trust it. Devices read it leniently (a
 * newer server may add fields); the push request uses `LineageInputSchema`, which refuses unknown keys
 * by name.
 */
const lineageShape = {
  /** Training data: a dataset version and the hash of its content (`sha256:…` or any digest text). */
  trainingData: z.object({ version: z.string().max(128).optional(), hash: z.string().max(256).optional() }).optional(),
  /** Older single-field form of `trainingData.hash`, still accepted. */
  trainingDataHash: z.string().max(256).optional(),
  /** The code that trained it: repository URL and commit. */
  code: z.object({ repository: z.string().max(512).optional(), commit: z.string().max(64).optional() }).optional(),
  hyperparameters: z.record(z.string(), z.unknown()).optional(),
  /** Training/evaluation metrics (numbers). */
  metrics: z.record(z.string(), z.number()).optional(),
  /** The version this one was derived from (fine-tune, re-export). */
  parentVersion: SemverSchema.optional(),
  source: z.string().max(512).optional(),
  /** Free-form labels (team, ticket, dataset split…). */
  labels: z.record(z.string().max(64), z.string().max(256)).optional(),
};
export const LineageSchema = z.object(lineageShape);
/** The push request's lineage: the same fields, unknown keys refused with their path. */
export const LineageInputSchema = z.strictObject({
  ...lineageShape,
  trainingData: z
    .strictObject({ version: z.string().max(128).optional(), hash: z.string().max(256).optional() })
    .optional(),
  code: z
    .strictObject({ repository: z.string().max(512).optional(), commit: z.string().max(64).optional() })
    .optional(),
  labels: z
    .record(z.string().max(64), z.string().max(256))
    .refine((l) => Object.keys(l).length <= 64, "at most 64 labels")
    .optional(),
});

export const ManifestSchema = z.object({
  _type: z.literal("manifest"),
  model: z.object({ name: ModelNameSchema, version: SemverSchema, variant: VariantSchema }),
  releaseCounter: z.number().int().min(1),
  createdAt: IsoTimeSchema,
  files: z.array(ManifestFileSchema).min(1).max(64),
  inputs: z.array(TensorSpecSchema).min(1),
  outputs: z.array(TensorSpecSchema).min(1),
  opset: z.number().int().min(1),
  compatibility: CompatibilitySchema,
  lineage: LineageSchema.default({}),
  /** The int8 quantizer's report with its validation (shared/schemas/quantization-report.ts); null for fp32. */
  quantization: QuantizationReportSchema.nullable().default(null),
  /** Implicit state for sequences (issue 18, shared/schemas/sequence.ts); absent for stateless models. */
  sequence: SequenceSpecSchema.optional(),
});
export type Manifest = z.infer<typeof ManifestSchema>;
export const SignedManifestSchema = envelopeSchema(ManifestSchema);
export type SignedManifest = z.infer<typeof SignedManifestSchema>;

/** Files every bundle must contain; the rest are optional (architecture.md §2). */
export const REQUIRED_BUNDLE_FILES = ["manifest.json", "model.onnx", "samples.json"] as const;
export const OPTIONAL_BUNDLE_FILES = ["MODEL_CARD.md", "baseline.json", "samples.bin"] as const;
