import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import * as tar from "tar";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import { readBundleSamples } from "../../shared/samples-codec.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import { buildBundle, prepareBundleContent } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { PendingReleaseRepo, PendingReleaseRow } from "../store/pending-release-repo.js";
import { pendingReleaseId } from "./release-signing.js";

export interface ReReleaseDeps {
  log: Logger;
  clock: Clock;
  models: ModelRepo;
  pending: PendingReleaseRepo;
  blobs: BlobStore;
  /** Null in offline release mode: a rollback waits for a signed re-release (see below). */
  releaseKey: KeyPair | null;
}

/**
 * Fleet rollback (architecture.md §3): a device never installs a lower release counter, so going back to
 * an older version means releasing its bytes again under the next counter. The new bundle's
 * manifest is the old one with a new `releaseCounter` (and `createdAt`), re-signed by the release
 * key; `model.onnx`, `samples.json` and the model card are byte-identical (checked), only the
 * bundle's own hash changes because the manifest inside it did.
 *
 * Offline release mode (no release key): the first call stores the re-release as a pending release
 * and throws RELEASE_NOT_SIGNED; the rollout stays `rolling-back` and its step is retried every tick
 * (scheduler), so it waits. Once an operator uploads the signatures, the next call returns the signed
 * re-release and the rollback proceeds.
 */
export function createReReleaser(deps: ReReleaseDeps) {
  const { log, clock, models, pending, blobs, releaseKey } = deps;

  const waitForSignatures = (origin: BundleRow, p: PendingReleaseRow) =>
    new EdgeFleetError(
      "RELEASE_NOT_SIGNED",
      `rolling back to ${origin.name}@${origin.version} (${origin.variant}) needs a signed re-release: sign pending release ${p.id} with fleetctl release sign and POST it to /v1/releases/pending/${p.id}/signatures; the rollout waits until then`,
      { details: { pendingId: p.id, originSha256: origin.sha256 } },
    );

  return async function reRelease(originSha256: string): Promise<BundleRow> {
    const origin = models.anyBundle(originSha256);
    if (!origin) throw new EdgeFleetError("NOT_FOUND", `bundle ${originSha256} is not in the registry`);
    if (releaseKey === null) {
      const signed = models.currentReReleaseOf(originSha256, origin.name);
      if (signed) return signed;
      const waiting = pending.reReleaseOf(originSha256);
      if (waiting) throw waitForSignatures(origin, waiting);
    }
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
      const samples: SamplesFile = await readBundleSamples((f) => readFile(join(src, f)));
      const modelCard = listed.has("MODEL_CARD.md") ? await readFile(join(src, "MODEL_CARD.md"), "utf8") : undefined;
      const baseline = listed.has("baseline.json")
        ? (JSON.parse(await readFile(join(src, "baseline.json"), "utf8")) as unknown)
        : undefined;
      const releaseCounter = models.nextReleaseCounter(old.model.name);
      const createdAt = new Date(clock.now()).toISOString();
      const { files: _files, ...rest } = old;
      const content = {
        manifest: { ...rest, releaseCounter, createdAt },
        modelPath: join(src, "model.onnx"),
        samples,
        ...(modelCard !== undefined ? { modelCard } : {}),
        ...(baseline !== undefined ? { baseline } : {}),
      };
      if (releaseKey === null) {
        const dir = await blobs.makeTempDir("pending-re-release");
        const ready = await prepareBundleContent(content, dir);
        for (const f of ready.manifest.files) {
          if (listed.get(f.path)?.sha256 !== f.sha256) {
            throw new EdgeFleetError("INTERNAL", `re-release of ${originSha256}: ${f.path} would change`);
          }
        }
        const p: PendingReleaseRow = {
          id: pendingReleaseId(ready.manifest),
          kind: "re-release",
          name: origin.name,
          version: origin.version,
          variant: origin.variant,
          releaseCounter,
          manifest: ready.manifest,
          payload: ready.payload,
          originSha256,
          createdAt,
        };
        await blobs.commitPending(dir, p.id);
        pending.insert(p);
        log.warn(
          { model: origin.name, origin: originSha256, pendingId: p.id },
          "rollback waits for a signed re-release",
        );
        throw waitForSignatures(origin, p);
      }
      const built = await buildBundle({ ...content, releaseKey, workDir: join(workDir, "build") });
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
