import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { BaselineSchema } from "../../shared/schemas/baseline.js";
import { ModelNameSchema, SemverSchema, Sha256Schema, type Variant } from "../../shared/schemas/common.js";
import { CompatibilitySchema, LineageSchema, type Manifest } from "../../shared/schemas/manifest.js";
import { type Sample, SampleInputSchema } from "../../shared/schemas/tensor.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import { buildBundle, prepareBundleContent } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import { AccuracyPolicySchema } from "../quantize/compare.js";
import { decodeModel } from "../quantize/onnx-model.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { PendingReleaseRepo, PendingReleaseRow } from "../store/pending-release-repo.js";
import { buildInt8Variant } from "./int8-variant.js";
import { inspectModel } from "./onnx-inspect.js";
import { pendingReleaseId } from "./release-signing.js";

/**
 * What POST /v1/models does when `quantize` is omitted: build and validate the int8 variant too
 * (issue 5: quantization is on by default); `"none"` opts out.
 */
export const DEFAULT_API_QUANTIZE = "int8" as const;

export const CreateModelRequestSchema = z.object({
  name: ModelNameSchema,
  version: SemverSchema,
  upload: Sha256Schema,
  samples: z.array(SampleInputSchema).min(1).max(64),
  lineage: LineageSchema.optional(),
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
  /** Drift baseline put in every variant's bundle as `baseline.json` (issue 6). */
  baseline: BaselineSchema.optional(),
});
export type CreateModelRequest = z.infer<typeof CreateModelRequestSchema>;

export interface ModelDeps {
  log: Logger;
  clock: Clock;
  models: ModelRepo;
  pending: PendingReleaseRepo;
  blobs: BlobStore;
  /** Null in offline release mode: variants are stored as pending releases (release-signing.ts). */
  releaseKey: KeyPair | null;
}

/** A variant ready to be bundled: its model file, golden samples and quantization report. */
interface PreparedVariant {
  variant: Variant;
  modelPath: string;
  samples: Sample[];
  quantization: Manifest["quantization"];
}

/**
 * int8 variants whose validation failed are stored (for inspection) but must never be rolled
 * out. Exported so the rollout side can apply the same rule when it picks bundles itself.
 */
export function isVariantPublished(b: Pick<BundleRow, "manifest">): boolean {
  const validation = (b.manifest.signed.quantization as { validation?: { passed?: boolean } } | null)?.validation;
  return validation?.passed !== false;
}

function variantView(b: BundleRow) {
  const quantization = b.manifest.signed.quantization as ({ validation?: unknown } & Record<string, unknown>) | null;
  return {
    variant: b.variant,
    bundle: { sha256: b.sha256, size: b.size },
    releaseCounter: b.releaseCounter,
    published: isVariantPublished(b),
    pendingSignature: false,
    validation: quantization?.validation ?? null,
    quantization,
  };
}

/** A variant waiting for offline release signatures: no bundle yet, never rolled out. */
function pendingVariantView(p: PendingReleaseRow) {
  const quantization = p.manifest.quantization as ({ validation?: unknown } & Record<string, unknown>) | null;
  return {
    variant: p.variant,
    bundle: null,
    releaseCounter: p.releaseCounter,
    published: false,
    pendingSignature: true,
    pendingId: p.id,
    validation: quantization?.validation ?? null,
    quantization,
  };
}

export function createModelService(deps: ModelDeps) {
  const { log, clock, models, pending, blobs, releaseKey } = deps;
  // Model creation is serialized: release counters are "max + 1" per name, and two concurrent
  // creates must not both claim the same counter.
  let queue: Promise<unknown> = Promise.resolve();

  async function create(req: CreateModelRequest) {
    if (models.hasVersion(req.name, req.version)) {
      throw new EdgeFleetError("CONFLICT", `model ${req.name} version ${req.version} already exists`);
    }
    const uploadPath = await blobs.uploadPath(req.upload);
    const fp32Bytes = await readFile(uploadPath);
    // Protobuf first, for precise refusals (not ONNX, truncated, external data); then onnxruntime.
    decodeModel(fp32Bytes);
    const inspection = await inspectModel(fp32Bytes, req.samples);
    const createdAt = new Date(clock.now()).toISOString();
    const compatibility = CompatibilitySchema.parse(req.compatibility ?? {});
    const lineage = req.lineage ?? {};
    const prepared: PreparedVariant[] = [
      { variant: "fp32", modelPath: uploadPath, samples: inspection.samples, quantization: null },
    ];
    const notBuilt: { variant: Variant; reason: string }[] = [];
    const scratch = await blobs.makeTempDir("variants");
    try {
      // Everything that can refuse the upload runs before any bundle is committed, so a refused
      // upload leaves nothing behind.
      if (req.quantize === "int8") {
        const int8 = await buildInt8Variant({
          fp32Bytes,
          fp32Samples: inspection.samples,
          calibration: req.calibration ?? [],
          policy: AccuracyPolicySchema.parse(req.accuracyPolicy ?? {}),
        });
        if (int8.built) {
          const modelPath = join(scratch, "model-int8.onnx");
          await writeFile(modelPath, int8.modelBytes);
          prepared.push({ variant: "int8", modelPath, samples: int8.samples, quantization: int8.report });
          const v = int8.report.validation;
          log.info(
            { model: req.name, version: req.version, passed: v.passed, sizeRatio: v.sizeRatio, failures: v.failures },
            "int8 variant validated",
          );
        } else {
          notBuilt.push({ variant: "int8", reason: int8.reason });
          log.warn({ model: req.name, version: req.version, reason: int8.reason }, "int8 variant not built");
        }
      }
      // One counter for every variant of a version: variants are the same release in different
      // encodings, so a device may move between them (anti-rollback compares counters, DESIGN §3),
      // and any newer version's variants outrank all of them.
      const releaseCounter = models.nextReleaseCounter(req.name);
      const bundles: BundleRow[] = [];
      const pendings: PendingReleaseRow[] = [];
      try {
        for (const p of prepared) {
          const manifest: Omit<Manifest, "files"> = {
            _type: "manifest",
            model: { name: req.name, version: req.version, variant: p.variant },
            releaseCounter,
            createdAt,
            inputs: inspection.inputs,
            outputs: inspection.outputs,
            opset: inspection.opset,
            compatibility,
            lineage,
            quantization: p.quantization,
          };
          const content = {
            manifest,
            modelPath: p.modelPath,
            samples: { samples: p.samples },
            ...(req.modelCard !== undefined ? { modelCard: req.modelCard } : {}),
            ...(req.baseline !== undefined ? { baseline: req.baseline } : {}),
          };
          if (releaseKey === null) {
            // Offline release signing: keep the payload and the unsigned manifest for the operator.
            const dir = await blobs.makeTempDir(`pending-${p.variant}`);
            const ready = await prepareBundleContent(content, dir);
            const id = pendingReleaseId(ready.manifest);
            await blobs.commitPending(dir, id);
            pendings.push({
              id,
              kind: "upload",
              name: req.name,
              version: req.version,
              variant: p.variant,
              releaseCounter,
              manifest: ready.manifest,
              payload: ready.payload,
              originSha256: null,
              createdAt,
            });
            continue;
          }
          const workDir = await blobs.makeTempDir(`build-${p.variant}`);
          try {
            const built = await buildBundle({ ...content, releaseKey, workDir });
            await blobs.commitBundle(built.path, built.sha256);
            bundles.push({
              sha256: built.sha256,
              size: built.size,
              name: req.name,
              version: req.version,
              variant: p.variant,
              releaseCounter,
              manifest: built.manifest,
              createdAt,
            });
          } finally {
            await rm(workDir, { recursive: true, force: true });
          }
        }
      } catch (err) {
        for (const p of pendings) await blobs.removePending(p.id);
        throw err;
      }
      const inserted = models.insertVersion(
        {
          name: req.name,
          version: req.version,
          lineage,
          samplesCount: inspection.samples.length,
          modelSha256: req.upload,
          createdAt,
        },
        bundles,
        pendings,
      );
      if (!inserted) {
        for (const p of pendings) await blobs.removePending(p.id);
      }
      if (!inserted) throw new EdgeFleetError("CONFLICT", `model ${req.name} version ${req.version} already exists`);
      log.info(
        {
          model: req.name,
          version: req.version,
          variants: bundles.map((b) => b.variant),
          pendingSignature: pendings.map((p) => p.variant),
        },
        "model registered",
      );
      const view = versionView(req.name, req.version);
      // A variant that could not be produced at all has no bundle; the response still says why.
      return {
        ...view,
        variants: [
          ...view.variants,
          ...notBuilt.map((n) => ({
            variant: n.variant,
            bundle: null,
            releaseCounter: null,
            published: false,
            pendingSignature: false,
            validation: null,
            quantization: null,
            reason: n.reason,
          })),
        ],
      };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  function versionView(name: string, version: string) {
    const v = models.getVersion(name, version);
    if (!v) throw new EdgeFleetError("NOT_FOUND", `model ${name} version ${version} not found`);
    const bundles = models.bundlesOf(name, version);
    const manifest = bundles[0]?.manifest ?? null;
    return {
      name: v.name,
      version: v.version,
      createdAt: v.createdAt,
      upload: v.modelSha256,
      lineage: v.lineage,
      samplesCount: v.samplesCount,
      manifest,
      variants: [...bundles.map(variantView), ...pending.uploadsOf(name, version).map(pendingVariantView)],
    };
  }

  return {
    create(req: CreateModelRequest) {
      const run = queue.then(() => create(req));
      queue = run.catch(() => undefined);
      return run;
    },
    list() {
      return { models: models.listNames() };
    },
    get(name: string) {
      const versions = models.versionsOf(name);
      if (versions.length === 0) throw new EdgeFleetError("NOT_FOUND", `model ${name} not found`);
      return {
        name,
        versions: versions.map((v) => ({
          version: v.version,
          createdAt: v.createdAt,
          variants: [
            ...models.bundlesOf(name, v.version).map(variantView),
            ...pending.uploadsOf(name, v.version).map(pendingVariantView),
          ],
        })),
      };
    },
    getVersion: versionView,
    /** The bundle for a (name, version, variant), for rollouts. */
    bundleFor(name: string, version: string, variant: Variant): BundleRow {
      const b = models.bundlesOf(name, version).find((x) => x.variant === variant);
      if (!b && pending.uploadsOf(name, version).some((p) => p.variant === variant)) {
        throw new EdgeFleetError(
          "RELEASE_NOT_SIGNED",
          `model ${name} version ${version}: the ${variant} variant waits for offline release signatures`,
        );
      }
      if (!b) throw new EdgeFleetError("NOT_FOUND", `model ${name} version ${version} has no ${variant} bundle`);
      if (!isVariantPublished(b)) {
        throw new EdgeFleetError(
          "CONFLICT",
          `model ${name} version ${version}: the ${variant} variant failed validation and is not published`,
          { validation: (b.manifest.signed.quantization as { validation?: unknown } | null)?.validation },
        );
      }
      return b;
    },
  };
}
export type ModelService = ReturnType<typeof createModelService>;
