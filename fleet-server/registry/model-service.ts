import { readFile, rm } from "node:fs/promises";
import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { ModelNameSchema, SemverSchema, Sha256Schema, type Variant } from "../../shared/schemas/common.js";
import { CompatibilitySchema, LineageSchema, type Manifest } from "../../shared/schemas/manifest.js";
import { type Sample, SampleInputSchema } from "../../shared/schemas/tensor.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import { buildBundle } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import { inspectModel, type ModelInspection } from "./onnx-inspect.js";

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
});
export type CreateModelRequest = z.infer<typeof CreateModelRequestSchema>;

export interface ModelDeps {
  log: Logger;
  clock: Clock;
  models: ModelRepo;
  blobs: BlobStore;
  releaseKey: KeyPair;
}

/**
 * How each variant's model file is produced from the uploaded fp32 model. fp32 is the upload
 * itself; int8 (our own graph transform) will be added here as another entry.
 */
interface VariantRecipe {
  variant: Variant;
  produce(ctx: { uploadPath: string; inspection: ModelInspection }): Promise<{ modelPath: string; samples: Sample[] }>;
}
const RECIPES: readonly VariantRecipe[] = [
  {
    variant: "fp32",
    produce: async ({ uploadPath, inspection }) => ({ modelPath: uploadPath, samples: inspection.samples }),
  },
];

function variantView(b: BundleRow) {
  return { variant: b.variant, bundle: { sha256: b.sha256, size: b.size }, releaseCounter: b.releaseCounter };
}

export function createModelService(deps: ModelDeps) {
  const { log, clock, models, blobs, releaseKey } = deps;
  // Model creation is serialized: release counters are "max + 1" per name, and two concurrent
  // creates must not both claim the same counter.
  let queue: Promise<unknown> = Promise.resolve();

  async function create(req: CreateModelRequest) {
    if (models.hasVersion(req.name, req.version)) {
      throw new EdgeFleetError("CONFLICT", `model ${req.name} version ${req.version} already exists`);
    }
    const uploadPath = await blobs.uploadPath(req.upload);
    const inspection = await inspectModel(await readFile(uploadPath), req.samples);
    const createdAt = new Date(clock.now()).toISOString();
    const compatibility = CompatibilitySchema.parse(req.compatibility ?? {});
    const lineage = req.lineage ?? {};
    let releaseCounter = models.nextReleaseCounter(req.name);
    const bundles: BundleRow[] = [];
    for (const recipe of RECIPES) {
      const workDir = await blobs.makeTempDir(`build-${recipe.variant}`);
      try {
        const produced = await recipe.produce({ uploadPath, inspection });
        const manifest: Omit<Manifest, "files"> = {
          _type: "manifest",
          model: { name: req.name, version: req.version, variant: recipe.variant },
          releaseCounter,
          createdAt,
          inputs: inspection.inputs,
          outputs: inspection.outputs,
          opset: inspection.opset,
          compatibility,
          lineage,
          quantization: null,
        };
        const built = await buildBundle({
          manifest,
          modelPath: produced.modelPath,
          samples: { samples: produced.samples },
          ...(req.modelCard !== undefined ? { modelCard: req.modelCard } : {}),
          releaseKey,
          workDir,
        });
        await blobs.commitBundle(built.path, built.sha256);
        bundles.push({
          sha256: built.sha256,
          size: built.size,
          name: req.name,
          version: req.version,
          variant: recipe.variant,
          releaseCounter,
          manifest: built.manifest,
          createdAt,
        });
        releaseCounter += 1;
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
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
    );
    if (!inserted) throw new EdgeFleetError("CONFLICT", `model ${req.name} version ${req.version} already exists`);
    log.info({ model: req.name, version: req.version, variants: bundles.map((b) => b.variant) }, "model registered");
    return versionView(req.name, req.version);
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
      variants: bundles.map(variantView),
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
          variants: models.bundlesOf(name, v.version).map(variantView),
        })),
      };
    },
    getVersion: versionView,
    /** The bundle for a (name, version, variant), for rollouts. */
    bundleFor(name: string, version: string, variant: Variant): BundleRow {
      const b = models.bundlesOf(name, version).find((x) => x.variant === variant);
      if (!b) throw new EdgeFleetError("NOT_FOUND", `model ${name} version ${version} has no ${variant} bundle`);
      return b;
    },
  };
}
export type ModelService = ReturnType<typeof createModelService>;
