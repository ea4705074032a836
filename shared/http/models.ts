import { z } from "zod";
import { BaselineSchema } from "../schemas/baseline.js";
import { ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "../schemas/common.js";
import { CompatibilitySchema, LineageInputSchema, LineageSchema, ManifestSchema } from "../schemas/manifest.js";
import {
  type AccuracyPolicy,
  AccuracyPolicySchema,
  QuantizationReportSchema,
  type ValidationReport,
  ValidationReportSchema,
} from "../schemas/quantization-report.js";
import { SequenceSpecSchema } from "../schemas/sequence.js";
import { SampleInputSchema } from "../schemas/tensor.js";
import { SignatureSchema } from "../schemas/trust.js";
import { defineRoute } from "./contract.js";
import { ListDevicesQuerySchema } from "./devices.js";

/** Model registry routes: uploads, model versions and their variants, tracked builds, bundle downloads. */

// The policy and the int8 reports are part of the signed manifest too, so their schemas live
// beside it (shared/schemas/quantization-report.ts); re-exported here as part of the HTTP contract.
export { type AccuracyPolicy, AccuracyPolicySchema, type ValidationReport, ValidationReportSchema };

/** What POST /v1/models does when `quantize` is omitted: build and validate int8 too (quantization on by default). */
export const DEFAULT_API_QUANTIZE = "int8" as const;

export const CreateModelRequestSchema = z.object({
  name: ModelNameSchema,
  version: SemverSchema,
  /** SHA-256 of a model uploaded with `POST /v1/uploads`. */
  upload: Sha256Schema,
  /**
   * Smoke-test inputs; their outputs are recorded on fp32 and checked on every device. Omitted:
   * the server generates labelled synthetic inputs from the model's input metadata (issue 23),
   * enough to prove a device runs the bundle, not to judge int8 accuracy.
   */
  samples: z.array(SampleInputSchema).min(1).max(64).optional(),
  /** Publish an int8 variant even when it was validated on synthetic inputs only (no samples, no calibration). */
  allowSyntheticInt8: z.boolean().default(false),
  lineage: LineageInputSchema.optional(),
  modelCard: z
    .string()
    .max(256 * 1024)
    .optional(),
  compatibility: CompatibilitySchema.partial().optional(),
  /** Build an int8 variant beside fp32 (validated against it; published only if it passes). */
  quantize: z.enum(["int8", "none"]).default(DEFAULT_API_QUANTIZE),
  /** Overrides of the default accuracy policy for the int8 variant. */
  accuracyPolicy: AccuracyPolicySchema.partial().optional(),
  /** Extra inputs used only to validate int8 against fp32 (not stored in the bundle). */
  calibration: z.array(SampleInputSchema).max(256).optional(),
  /** Drift baseline put in every variant's bundle as `baseline.json`. */
  baseline: BaselineSchema.optional(),
  /** A stateful model's implicit state (issue 18, docs/protocol.md "Sequences"), put in every variant's manifest. */
  sequence: SequenceSpecSchema.optional(),
});
export type CreateModelRequest = z.infer<typeof CreateModelRequestSchema>;

/** One variant of a version: its bundle (none while it waits for signatures or when not built) and int8 report. */
export const VariantViewSchema = z.looseObject({
  variant: VariantSchema,
  bundle: z.object({ sha256: Sha256Schema, size: z.number().int().min(0) }).nullable(),
  releaseCounter: z.number().int().nullable(),
  /** int8 variants that failed validation are kept for inspection but never rolled out. */
  published: z.boolean(),
  pendingSignature: z.boolean(),
  /** The pending release to sign (offline release signing). */
  pendingId: Sha256Schema.optional(),
  /** The int8 validation (the same as `quantization.validation`); null for fp32. */
  validation: ValidationReportSchema.nullable(),
  /** The quantizer's report as signed into the manifest; null for fp32. */
  quantization: QuantizationReportSchema.nullable(),
  /** Why the variant could not be built at all. */
  reason: z.string().optional(),
});
export type VariantView = z.infer<typeof VariantViewSchema>;

/**
 * A signed manifest as the server stores it (decoded with `SignedManifestSchema` at the store).
 * Responses are checked against this schema, never reshaped by it: the bytes are what is signed.
 */
const SignedDocumentSchema = z.looseObject({
  signed: ManifestSchema,
  signatures: z.array(SignatureSchema),
});

export const VersionViewSchema = z.looseObject({
  name: ModelNameSchema,
  version: SemverSchema,
  createdAt: z.string(),
  /** SHA-256 of the uploaded fp32 model. */
  upload: Sha256Schema,
  lineage: LineageSchema,
  samplesCount: z.number().int(),
  /** The first variant's signed manifest; null while every variant waits for signatures. */
  manifest: SignedDocumentSchema.nullable(),
  variants: z.array(VariantViewSchema),
});
export type VersionView = z.infer<typeof VersionViewSchema>;

const TensorShapeSchema = z.object({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) });
/** One bundled sample, summarised (fleet-server/registry/sample-summary.ts): shapes, first output values, arg-max. */
export const SampleSummarySchema = z.object({
  name: z.string(),
  inputs: z.array(TensorShapeSchema),
  outputs: z.array(
    TensorShapeSchema.extend({
      preview: z.array(z.union([z.number(), z.string()])),
      argmax: z.number().int().nullable(),
    }),
  ),
});
export type SampleSummary = z.infer<typeof SampleSummarySchema>;
export const VersionSamplesSchema = z.object({
  variant: VariantSchema,
  bundle: Sha256Schema,
  samples: z.array(SampleSummarySchema),
});

/** The phases of a model build, in order (fleet-server/registry/build-tracker.ts). */
export const BUILD_PHASES = [
  "inspecting",
  "recording-samples",
  "quantizing",
  "validating-int8",
  "packing",
  "signing",
  "pending-signature",
] as const;
export const BuildStatusSchema = z.enum(["running", "succeeded", "failed"]);
const ProgressSchema = z.object({ done: z.number(), total: z.number() }).nullable();

export const BuildViewSchema = z.object({
  id: z.string(),
  status: BuildStatusSchema,
  createdAt: z.string(),
  endedAt: z.string().optional(),
  model: z.object({ name: z.string(), version: z.string() }).optional(),
  /** Current (or last) phase; null while the build waits for an earlier one to finish. */
  phase: z.enum(BUILD_PHASES).nullable(),
  phases: z.array(
    z.object({
      name: z.enum(BUILD_PHASES),
      status: BuildStatusSchema,
      startedAt: z.string(),
      endedAt: z.string().optional(),
      progress: ProgressSchema,
    }),
  ),
  progress: ProgressSchema,
  /** What the synchronous `POST /v1/models` would have answered (succeeded builds only). */
  result: VersionViewSchema.optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type BuildViewBody = z.infer<typeof BuildViewSchema>;

export const BuildStartedSchema = z.object({
  buildId: z.string(),
  status: BuildStatusSchema,
  links: z.object({ self: z.string() }),
});

export const UploadResultSchema = z.object({ sha256: Sha256Schema, size: z.number().int().min(0) });

export const ModelListSchema = z.object({
  models: z.array(
    z.object({
      name: ModelNameSchema,
      versions: z.number().int(),
      latestVersion: SemverSchema,
      latestReleaseCounter: z.number().int(),
    }),
  ),
});

export const ModelViewSchema = z.object({
  name: ModelNameSchema,
  versions: z.array(z.object({ version: SemverSchema, createdAt: z.string(), variants: z.array(VariantViewSchema) })),
});

const NameParams = z.object({ name: ModelNameSchema });
export const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });

/** `GET /v1/models/{n}/feedback` (issue 22, fleet-server/registry/feedback-summary.ts). */
export const FeedbackSummarySchema = z.object({
  model: z.string(),
  /** Devices considered (all, or the cohort's) and how many reported any joined label. */
  devices: z.number().int().min(0),
  reportingDevices: z.number().int().min(0),
  versions: z.array(
    z.object({
      version: z.string(),
      arm: z.string().nullable(),
      devices: z.number().int().min(0),
      joined: z.number().int().min(0),
      correct: z.number().int().min(0),
      accuracy: z.number().min(0).max(1).nullable(),
      /** Regression feedback pooled over the devices (element-weighted), when any. */
      regression: z.object({ count: z.number().int().min(1), mae: z.number(), rmse: z.number() }).nullable(),
    }),
  ),
  /** The bandit A/B splits devices run now (their candidate share), when any. */
  bandit: z
    .object({
      devices: z.number().int().min(1),
      meanCandidateShare: z.number(),
      minCandidateShare: z.number(),
      maxCandidateShare: z.number(),
      /** Requests each arm served on those devices since their split started, summed. */
      candidateRequests: z.number().int().min(0),
      controlRequests: z.number().int().min(0),
    })
    .nullable(),
});
export type FeedbackSummary = z.infer<typeof FeedbackSummarySchema>;

export const modelRoutes = {
  upload: defineRoute({
    operationId: "upload",
    method: "POST",
    path: "/v1/uploads",
    tag: "models",
    summary: "Upload a model file (application/octet-stream); answers its SHA-256 for POST /v1/models",
    bodyMediaTypes: ["application/octet-stream"],
    responses: { 201: UploadResultSchema },
  }),
  createModel: defineRoute({
    operationId: "createModel",
    method: "POST",
    path: "/v1/models",
    tag: "models",
    summary: "Register a model version: record sample outputs, build, validate and sign its variants",
    query: z.object({ async: z.enum(["1", "true", "0", "false"]).optional() }),
    body: CreateModelRequestSchema,
    responses: { 201: VersionViewSchema, 202: BuildStartedSchema },
  }),
  getModelBuild: defineRoute({
    operationId: "getModelBuild",
    method: "GET",
    path: "/v1/model-builds/:id",
    tag: "models",
    summary: "A tracked model build (POST /v1/models?async=1): phases, progress, result or error",
    params: z.object({ id: z.string().min(1).max(64) }),
    responses: { 200: BuildViewSchema },
  }),
  listModels: defineRoute({
    operationId: "listModels",
    method: "GET",
    path: "/v1/models",
    tag: "models",
    summary: "Every model with its number of versions and latest version",
    responses: { 200: ModelListSchema },
  }),
  getModel: defineRoute({
    operationId: "getModel",
    method: "GET",
    path: "/v1/models/:name",
    tag: "models",
    summary: "A model's versions and their variants",
    params: NameParams,
    responses: { 200: ModelViewSchema },
  }),
  getModelVersion: defineRoute({
    operationId: "getModelVersion",
    method: "GET",
    path: "/v1/models/:name/versions/:version",
    tag: "models",
    summary: "One model version: manifest, lineage and each variant with its int8 validation",
    params: VersionParams,
    responses: { 200: VersionViewSchema },
  }),
  getModelVersionSamples: defineRoute({
    operationId: "getModelVersionSamples",
    method: "GET",
    path: "/v1/models/:name/versions/:version/samples",
    tag: "models",
    summary: "The samples in a version's fp32 bundle: input shapes and the outputs devices check against",
    params: VersionParams,
    responses: { 200: VersionSamplesSchema },
  }),
  getModelFeedback: defineRoute({
    operationId: "getModelFeedback",
    method: "GET",
    path: "/v1/models/:name/feedback",
    tag: "models",
    summary:
      "Ground-truth feedback the devices joined to this model's predictions, per version and A/B arm, for all devices or a cohort (tag=key=value)",
    params: NameParams,
    query: z.object({ tag: ListDevicesQuerySchema.shape.tag }),
    responses: { 200: FeedbackSummarySchema },
  }),
  getBundle: defineRoute({
    operationId: "getBundle",
    method: ["GET", "HEAD"],
    path: "/v1/bundles/:sha256",
    tag: "models",
    summary: "Download a signed bundle (Range requests supported); devices use their MQTT credentials",
    params: z.object({ sha256: Sha256Schema }),
    responses: {
      200: { kind: "binary", mediaType: "application/octet-stream", description: "the bundle (a tar file)" },
      206: { kind: "binary", mediaType: "application/octet-stream", description: "the requested byte range" },
    },
  }),
} as const;
