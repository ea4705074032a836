import { z } from "zod";
import { IsoTimeSchema, ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "./common.js";
import { QuantizationReportSchema } from "./quantization-report.js";
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

export const LineageSchema = z.object({
  trainingDataHash: z.string().max(256).optional(),
  hyperparameters: z.record(z.string(), z.unknown()).optional(),
  metrics: z.record(z.string(), z.number()).optional(),
  parentVersion: SemverSchema.optional(),
  source: z.string().max(512).optional(),
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
});
export type Manifest = z.infer<typeof ManifestSchema>;
export const SignedManifestSchema = envelopeSchema(ManifestSchema);
export type SignedManifest = z.infer<typeof SignedManifestSchema>;

/** Files every bundle must contain; the rest are optional (architecture.md §2). */
export const REQUIRED_BUNDLE_FILES = ["manifest.json", "model.onnx", "samples.json"] as const;
export const OPTIONAL_BUNDLE_FILES = ["MODEL_CARD.md", "baseline.json", "samples.bin"] as const;
