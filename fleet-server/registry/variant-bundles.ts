import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Variant } from "../../shared/schemas/common.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { Sample } from "../../shared/schemas/tensor.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import { type PreparedContent, packBundle, prepareBundleContent } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow } from "../store/model-repo.js";
import type { PendingReleaseRow } from "../store/pending-release-repo.js";
import type { BuildProgressFn } from "./build-tracker.js";
import { pendingReleaseId } from "./release-signing.js";

/** A variant ready to be bundled: its model file, golden samples and quantization report. */
export interface PreparedVariant {
  variant: Variant;
  modelPath: string;
  samples: Sample[];
  quantization: Manifest["quantization"];
}

export interface VariantBundleInput {
  name: string;
  version: string;
  releaseCounter: number;
  createdAt: string;
  /** Manifest fields shared by every variant (everything but `model`, `quantization`, `files`). */
  common: Omit<Manifest, "_type" | "files" | "model" | "quantization" | "releaseCounter" | "createdAt">;
  modelCard?: string;
  baseline?: unknown;
  prepared: PreparedVariant[];
}

/**
 * Packs every variant of a new version. With a release key: `packing` (payload written and
 * hashed, per variant) then `signing` (manifest signed, bundle sealed and stored, per variant).
 * In offline release mode: `packing` then `pending-signature` (payloads kept for the operator).
 * On failure, nothing it stored stays pending; committed bundles are content-addressed and
 * harmless until a version row references them.
 */
export async function bundleVariants(
  deps: { blobs: BlobStore; releaseKey: KeyPair | null },
  input: VariantBundleInput,
  onProgress?: BuildProgressFn,
): Promise<{ bundles: BundleRow[]; pendings: PendingReleaseRow[] }> {
  const { blobs, releaseKey } = deps;
  const { prepared } = input;
  const total = prepared.length;
  const bundles: BundleRow[] = [];
  const pendings: PendingReleaseRow[] = [];
  const workDirs: string[] = [];
  const contentOf = (p: PreparedVariant) => ({
    manifest: {
      _type: "manifest" as const,
      model: { name: input.name, version: input.version, variant: p.variant },
      releaseCounter: input.releaseCounter,
      createdAt: input.createdAt,
      ...input.common,
      quantization: p.quantization,
    },
    modelPath: p.modelPath,
    samples: { samples: p.samples },
    ...(input.modelCard !== undefined ? { modelCard: input.modelCard } : {}),
    ...(input.baseline !== undefined ? { baseline: input.baseline } : {}),
  });
  try {
    onProgress?.("packing", 0, total);
    const ready: { p: PreparedVariant; content: PreparedContent; workDir: string }[] = [];
    for (const p of prepared) {
      if (releaseKey === null) {
        // Offline release signing: keep the payload and the unsigned manifest for the operator.
        const dir = await blobs.makeTempDir(`pending-${p.variant}`);
        const content = await prepareBundleContent(contentOf(p), dir);
        const id = pendingReleaseId(content.manifest);
        await blobs.commitPending(dir, id);
        pendings.push({
          id,
          kind: "upload",
          name: input.name,
          version: input.version,
          variant: p.variant,
          releaseCounter: input.releaseCounter,
          manifest: content.manifest,
          payload: content.payload,
          originSha256: null,
          createdAt: input.createdAt,
        });
      } else {
        const workDir = await blobs.makeTempDir(`build-${p.variant}`);
        workDirs.push(workDir);
        const dir = join(workDir, "content");
        await mkdir(dir, { mode: 0o700 });
        ready.push({ p, content: await prepareBundleContent(contentOf(p), dir), workDir });
      }
      onProgress?.("packing", ready.length + pendings.length, total);
    }
    if (releaseKey === null) {
      onProgress?.("pending-signature");
      return { bundles, pendings };
    }
    onProgress?.("signing", 0, total);
    for (const { p, content, workDir } of ready) {
      const signed = signEnvelope(content.manifest, [releaseKey]);
      const built = await packBundle(content, signed, workDir);
      await blobs.commitBundle(built.path, built.sha256);
      bundles.push({
        sha256: built.sha256,
        size: built.size,
        name: input.name,
        version: input.version,
        variant: p.variant,
        releaseCounter: input.releaseCounter,
        manifest: built.manifest,
        createdAt: input.createdAt,
      });
      onProgress?.("signing", bundles.length, total);
    }
    return { bundles, pendings };
  } catch (err) {
    for (const p of pendings) await blobs.removePending(p.id);
    throw err;
  } finally {
    for (const d of workDirs) await rm(d, { recursive: true, force: true });
  }
}
