import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { canonicalBytes, canonicalJson } from "../../shared/canonical-json.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import { type Envelope, type Root, SignatureSchema } from "../../shared/schemas/trust.js";
import { verifyRoleSignatures } from "../../shared/trust/envelope.js";
import { packBundle } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { PendingReleaseRepo, PendingReleaseRow } from "../store/pending-release-repo.js";

/**
 * Offline release signing (issue 7, docs/security.md "Offline release signing"). A server started
 * with `offlineRelease` holds no release key: each release is stored as a pending release (payload
 * files plus the unsigned manifest); an operator fetches the manifest, signs it off the server with
 * `fleetctl release sign` (k-of-n: each key holder appends a signature) and uploads the envelope.
 * The server checks a threshold of release signatures under the current root, then packs and
 * publishes the bundle exactly as an online build would have.
 */

/** What an operator uploads: the manifest they signed and the signatures. */
export const SignatureUploadSchema = z.object({
  signed: z.record(z.string(), z.unknown()),
  signatures: z.array(SignatureSchema).min(1).max(32),
});
export type SignatureUpload = z.infer<typeof SignatureUploadSchema>;

/** Pending release id: the SHA-256 of the manifest's canonical JSON. */
export function pendingReleaseId(manifest: Manifest): string {
  return createHash("sha256").update(canonicalBytes(manifest)).digest("hex");
}

/**
 * Pure: the envelope to publish, or why not. The uploaded `signed` must be the pending manifest
 * exactly (canonical JSON), and the signatures must reach the release role's threshold with
 * distinct trusted key ids (`countValidSignatures`). Extra invalid signatures are kept, as agents
 * accept them beside a valid threshold.
 */
export function checkReleaseSignatures(pending: Manifest, upload: SignatureUpload, root: Root): Envelope<Manifest> {
  if (canonicalJson(upload.signed) !== canonicalJson(pending)) {
    throw new EdgeFleetError("MANIFEST_MISMATCH", "the signed manifest differs from the pending release's manifest");
  }
  const envelope: Envelope<Manifest> = { signed: pending, signatures: upload.signatures };
  verifyRoleSignatures(envelope, root, "release");
  return envelope;
}

export function pendingView(p: PendingReleaseRow) {
  return {
    id: p.id,
    kind: p.kind,
    name: p.name,
    version: p.version,
    variant: p.variant,
    releaseCounter: p.releaseCounter,
    originSha256: p.originSha256,
    createdAt: p.createdAt,
    manifest: p.manifest,
  };
}

export interface ReleaseSigningDeps {
  log: Logger;
  models: ModelRepo;
  pending: PendingReleaseRepo;
  blobs: BlobStore;
  /** The current root (its release role decides what counts). */
  root: () => Root;
}

export function createReleaseSigning(deps: ReleaseSigningDeps) {
  const { log, models, pending, blobs, root } = deps;
  // Submissions are serialized: two uploads for one pending release must not both publish it.
  let queue: Promise<unknown> = Promise.resolve();

  function pendingUpload(name: string, version: string, variant: string): PendingReleaseRow | null {
    return pending.uploadsOf(name, version).find((p) => p.variant === variant) ?? null;
  }

  async function submit(id: string, upload: SignatureUpload) {
    const p = pending.get(id);
    if (!p) throw new EdgeFleetError("NOT_FOUND", `no pending release ${id}`);
    const envelope = checkReleaseSignatures(p.manifest, upload, root());
    const dir = blobs.pendingPath(id);
    // The payload waited on disk: check it is still what the manifest (now signed) lists.
    for (const f of p.manifest.files) {
      const got = await sha256File(join(dir, f.path));
      if (got.sha256 !== f.sha256 || got.size !== f.size) {
        throw new EdgeFleetError("MANIFEST_MISMATCH", `pending release ${id}: ${f.path} differs from its manifest`);
      }
    }
    const workDir = await blobs.makeTempDir("sign");
    try {
      const built = await packBundle({ dir, payload: p.payload }, envelope, workDir);
      await blobs.commitBundle(built.path, built.sha256);
      const row: BundleRow = {
        sha256: built.sha256,
        size: built.size,
        name: p.name,
        version: p.version,
        variant: p.variant,
        releaseCounter: p.releaseCounter,
        manifest: built.manifest,
        createdAt: p.createdAt,
      };
      pending.publish(id, row, built.manifest);
      await blobs.removePending(id);
      log.info(
        { model: p.name, version: p.version, variant: p.variant, kind: p.kind, sha256: row.sha256 },
        "release signed offline and published",
      );
      return {
        id,
        kind: p.kind,
        name: p.name,
        version: p.version,
        variant: p.variant,
        releaseCounter: p.releaseCounter,
        published: true,
        bundle: { sha256: row.sha256, size: row.size },
      };
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }

  return {
    list() {
      return { pending: pending.list().map(pendingView) };
    },
    get(id: string) {
      const p = pending.get(id);
      if (!p) throw new EdgeFleetError("NOT_FOUND", `no pending release ${id}`);
      return pendingView(p);
    },
    /** The manifest of a variant: unsigned while pending, the signed envelope once published. */
    manifestOf(name: string, version: string, variant: string) {
      const p = pendingUpload(name, version, variant);
      if (p) return { pendingSignature: true, pendingId: p.id, manifest: p.manifest };
      const b = models.bundlesOf(name, version).find((x) => x.variant === variant);
      if (!b) throw new EdgeFleetError("NOT_FOUND", `model ${name} version ${version} has no ${variant} variant`);
      return { pendingSignature: false, pendingId: null, manifest: b.manifest.signed, envelope: b.manifest };
    },
    submit(id: string, upload: SignatureUpload) {
      const run = queue.then(() => submit(id, upload));
      queue = run.catch(() => undefined);
      return run;
    },
    submitForVariant(name: string, version: string, variant: string, upload: SignatureUpload) {
      const p = pendingUpload(name, version, variant);
      if (!p) {
        const published = models.bundlesOf(name, version).some((b) => b.variant === variant);
        throw new EdgeFleetError(
          published ? "CONFLICT" : "NOT_FOUND",
          published
            ? `${name} ${version} ${variant} is already signed and published`
            : `model ${name} version ${version} has no pending ${variant} variant`,
        );
      }
      return this.submit(p.id, upload);
    },
  };
}
export type ReleaseSigning = ReturnType<typeof createReleaseSigning>;
