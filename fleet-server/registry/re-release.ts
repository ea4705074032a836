import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import * as tar from "tar";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import { buildBundle } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";

export interface ReReleaseDeps {
  log: Logger;
  clock: Clock;
  models: ModelRepo;
  blobs: BlobStore;
  releaseKey: KeyPair;
}

/**
 * Fleet rollback (DESIGN §3): a device never installs a lower release counter, so going back to
 * an older version means releasing its bytes again under the next counter. The new bundle's
 * manifest is the old one with a new `releaseCounter` (and `createdAt`), re-signed by the release
 * key; `model.onnx`, `samples.json` and the model card are byte-identical (checked), only the
 * bundle's own hash changes because the manifest inside it did.
 */
export function createReReleaser(deps: ReReleaseDeps) {
  const { log, clock, models, blobs, releaseKey } = deps;

  return async function reRelease(originSha256: string): Promise<BundleRow> {
    const origin = models.anyBundle(originSha256);
    if (!origin) throw new EdgeFleetError("NOT_FOUND", `bundle ${originSha256} is not in the registry`);
    const old: Manifest = origin.manifest.signed;
    const listed = new Map(old.files.map((f) => [f.path, f]));
    const workDir = await blobs.makeTempDir("re-release");
    try {
      const src = join(workDir, "src");
      await mkdir(src, { mode: 0o700 });
      await mkdir(join(workDir, "build"), { mode: 0o700 });
      // Our own content-addressed bundle, but still: only the regular files its manifest lists.
      await tar.x({
        file: blobs.bundlePath(originSha256),
        cwd: src,
        filter: (path, entry) =>
          (listed.has(path) || path === "manifest.json") && "type" in entry && entry.type === "File",
      });
      for (const f of old.files) {
        const got = await sha256File(join(src, f.path));
        if (got.sha256 !== f.sha256 || got.size !== f.size) {
          throw new EdgeFleetError("MANIFEST_MISMATCH", `bundle ${originSha256}: ${f.path} differs from its manifest`);
        }
      }
      const samples = JSON.parse(await readFile(join(src, "samples.json"), "utf8")) as SamplesFile;
      const modelCard = listed.has("MODEL_CARD.md") ? await readFile(join(src, "MODEL_CARD.md"), "utf8") : undefined;
      const releaseCounter = models.nextReleaseCounter(old.model.name);
      const createdAt = new Date(clock.now()).toISOString();
      const { files: _files, ...rest } = old;
      const built = await buildBundle({
        manifest: { ...rest, releaseCounter, createdAt },
        modelPath: join(src, "model.onnx"),
        samples,
        ...(modelCard !== undefined ? { modelCard } : {}),
        releaseKey,
        workDir: join(workDir, "build"),
      });
      // The payload must be the old bytes exactly; only the manifest may differ.
      for (const f of built.manifest.signed.files) {
        if (listed.get(f.path)?.sha256 !== f.sha256) {
          throw new EdgeFleetError("INTERNAL", `re-release of ${originSha256}: ${f.path} would change`);
        }
      }
      await blobs.commitBundle(built.path, built.sha256);
      const row: BundleRow = {
        sha256: built.sha256,
        size: built.size,
        name: origin.name,
        version: origin.version,
        variant: origin.variant,
        releaseCounter,
        manifest: built.manifest,
        createdAt,
      };
      models.insertReRelease(row, originSha256);
      log.info(
        { model: origin.name, version: origin.version, origin: originSha256, sha256: built.sha256, releaseCounter },
        "re-released previous bytes under a new release counter",
      );
      return row;
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  };
}
export type ReReleaser = ReturnType<typeof createReReleaser>;
