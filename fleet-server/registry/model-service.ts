import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { type CreateModelRequest, CreateModelRequestSchema, DEFAULT_API_QUANTIZE } from "../../shared/http/models.js";
import type { Logger } from "../../shared/logger.js";
import { type Variant, VariantSchema } from "../../shared/schemas/common.js";
import { CompatibilitySchema } from "../../shared/schemas/manifest.js";
// The request schema is part of the HTTP contract (shared/http/models.ts).
import { sequenceSpecProblems } from "../../shared/schemas/sequence.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { PendingReleaseRepo, PendingReleaseRow } from "../store/pending-release-repo.js";
import type { BuildProgressFn } from "./build-tracker.js";
import { checkModel } from "./model-checks.js";
import { bundleVariants, type PreparedVariant } from "./variant-bundles.js";

export { type CreateModelRequest, CreateModelRequestSchema, DEFAULT_API_QUANTIZE };

export interface ModelDeps {
  log: Logger;
  clock: Clock;
  models: ModelRepo;
  pending: PendingReleaseRepo;
  blobs: BlobStore;
  /** Null in offline release mode: variants are stored as pending releases (release-signing.ts). */
  releaseKey: KeyPair | null;
}

/**
 * int8 variants whose validation failed are stored (for inspection) but must never be rolled
 * out. Exported so the rollout side can apply the same rule when it picks bundles itself.
 */
export function isVariantPublished(b: Pick<BundleRow, "manifest">): boolean {
  // The store decoded the manifest, its quantization report included (shared/schemas/quantization-report.ts).
  return b.manifest.signed.quantization?.validation.passed !== false;
}

function variantView(b: BundleRow) {
  const quantization = b.manifest.signed.quantization;
  return {
    // The column only ever holds a variant name; parsing it gives the contract's type.
    variant: VariantSchema.parse(b.variant),
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
  const quantization = p.manifest.quantization;
  return {
    variant: VariantSchema.parse(p.variant),
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

  /** Refusals that need no model work: answered before an async build is even started. */
  async function precheck(req: CreateModelRequest): Promise<void> {
    if (models.hasVersion(req.name, req.version)) {
      throw new EdgeFleetError("CONFLICT", `model ${req.name} version ${req.version} already exists`);
    }
    await blobs.uploadPath(req.upload);
  }

  async function create(req: CreateModelRequest, onProgress?: BuildProgressFn) {
    await precheck(req);
    const uploadPath = await blobs.uploadPath(req.upload);
    const fp32Bytes = await readFile(uploadPath);
    const { inspection, int8 } = await checkModel(fp32Bytes, req, onProgress);
    const createdAt = new Date(clock.now()).toISOString();
    const compatibility = CompatibilitySchema.parse(req.compatibility ?? {});
    const lineage = req.lineage ?? {};
    // A stateful model's spec must name the model's own inputs and outputs (issue 18).
    const sequenceProblems = req.sequence
      ? sequenceSpecProblems(req.sequence, inspection.inputs, inspection.outputs)
      : [];
    if (sequenceProblems.length > 0) {
      throw new EdgeFleetError("VALIDATION_FAILED", `sequence: ${sequenceProblems.join("; ")}`, {
        details: { problems: sequenceProblems },
      });
    }
    const prepared: PreparedVariant[] = [
      { variant: "fp32", modelPath: uploadPath, samples: inspection.samples, quantization: null },
    ];
    const notBuilt: { variant: Variant; reason: string }[] = [];
    const scratch = await blobs.makeTempDir("variants");
    try {
      // Everything that can refuse the upload runs before any bundle is committed, so a refused
      // upload leaves nothing behind.
      if (int8) {
        if (int8.built) {
          const modelPath = join(scratch, "model-int8.onnx");
          await writeFile(modelPath, int8.modelBytes);
          const v = int8.report.validation;
          prepared.push({ variant: "int8", modelPath, samples: int8.samples, quantization: int8.report });
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
      // encodings, so a device may move between them (anti-rollback compares counters, architecture.md §3),
      // and any newer version's variants outrank all of them.
      const releaseCounter = models.nextReleaseCounter(req.name);
      const { bundles, pendings } = await bundleVariants(
        { blobs, releaseKey },
        {
          name: req.name,
          version: req.version,
          releaseCounter,
          createdAt,
          common: {
            inputs: inspection.inputs,
            outputs: inspection.outputs,
            opset: inspection.opset,
            compatibility,
            lineage,
            ...(req.sequence ? { sequence: req.sequence } : {}),
          },
          ...(req.modelCard !== undefined ? { modelCard: req.modelCard } : {}),
          ...(req.baseline !== undefined ? { baseline: req.baseline } : {}),
          prepared,
        },
        onProgress,
      );
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
    /** Registers a version; `onProgress` sees each build phase (build-tracker.ts). */
    create(req: CreateModelRequest, onProgress?: BuildProgressFn) {
      const run = queue.then(() => create(req, onProgress));
      queue = run.catch(() => undefined);
      return run;
    },
    precheck,
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
          { details: { validation: b.manifest.signed.quantization?.validation } },
        );
      }
      return b;
    },
  };
}
export type ModelService = ReturnType<typeof createModelService>;
