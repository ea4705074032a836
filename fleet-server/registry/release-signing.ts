import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { z } from "zod";
import { canonicalBytes, canonicalJson } from "../../shared/canonical-json.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import {
  type PendingReleaseView,
  SignatureFileSchema,
  type SignatureStatus,
  type SignatureSubmitResult,
} from "../../shared/schemas/release-signing.js";
import type { Envelope, Root, Signature } from "../../shared/schemas/trust.js";
import { countValidSignatures, verifyRoleSignatures } from "../../shared/trust/envelope.js";
import { packBundle } from "../bundles/bundle-builder.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { PendingReleaseRepo, StoredPendingRelease } from "../store/pending-release-repo.js";

/**
 * Offline release signing (issue 7, docs/security.md "Offline release signing"). A server started
 * with `offlineRelease` holds no release key: each release is stored as a pending release (payload
 * files plus the unsigned manifest); an operator fetches the manifest, signs it off the server with
 * `fleetctl release sign` (k-of-n: each key holder appends a signature, or signs alone) and uploads
 * the envelope. Valid signatures are collected on the pending release across uploads; once they
 * reach the release role's threshold under the current root, the server packs and publishes the
 * bundle exactly as an online build would have.
 */

/** What an operator uploads: the manifest they signed and the signatures (one schema with fleetctl). */
export const SignatureUploadSchema = SignatureFileSchema;
export type SignatureUpload = z.infer<typeof SignatureUploadSchema>;

/** Pending release id: the SHA-256 of the manifest's canonical JSON. */
export function pendingReleaseId(manifest: Manifest): string {
  return createHash("sha256").update(canonicalBytes(manifest)).digest("hex");
}

/**
 * Pure: the signatures in `signatures` that are valid release signatures over `manifest` under
 * `root`, at most one per key id (the first valid one). A signature is only ever a yes/no answer
 * (`countValidSignatures` on one signature at a time), never an identifier.
 */
export function validReleaseSignatures(manifest: Manifest, signatures: readonly Signature[], root: Root): Signature[] {
  const role = root.roles.release;
  const byKey = new Map<string, Signature>();
  for (const sig of signatures) {
    if (byKey.has(sig.keyid)) continue;
    if (countValidSignatures({ signed: manifest, signatures: [sig] }, role, root.keys) === 1) byKey.set(sig.keyid, sig);
  }
  return [...byKey.values()];
}

/** Pure: how far `valid` (from `validReleaseSignatures`) is from the release threshold. */
export function signatureStatus(valid: readonly Signature[], root: Root): SignatureStatus {
  const role = root.roles.release;
  const signedBy = valid.map((s) => s.keyid);
  return {
    required: role.threshold,
    valid: valid.length,
    needed: Math.max(0, role.threshold - valid.length),
    signedBy,
    missing: role.keyids.filter((k) => !signedBy.includes(k)),
  };
}

/**
 * Pure: adds an upload's signatures to those collected for a pending release. The uploaded `signed`
 * must be the pending manifest exactly (canonical JSON), else MANIFEST_MISMATCH; an upload with
 * no valid release signature at all is refused (SIGNATURE_THRESHOLD_NOT_MET), so garbage is never
 * stored. Signatures collected earlier are checked again under the current root (a rotated-out key
 * stops counting). `envelope` is set once the threshold is reached; it carries only the valid
 * signatures, one per key id.
 */
export function collectReleaseSignatures(
  pending: Manifest,
  collected: readonly Signature[],
  upload: SignatureUpload,
  root: Root,
): { signatures: Signature[]; added: number; status: SignatureStatus; envelope: Envelope<Manifest> | null } {
  if (canonicalJson(upload.signed) !== canonicalJson(pending)) {
    throw new EdgeFleetError("MANIFEST_MISMATCH", "the signed manifest differs from the pending release's manifest");
  }
  const before = validReleaseSignatures(pending, collected, root);
  const uploaded = validReleaseSignatures(pending, upload.signatures, root);
  const signatures = validReleaseSignatures(pending, [...before, ...uploaded], root);
  const status = signatureStatus(signatures, root);
  if (uploaded.length === 0) {
    throw new EdgeFleetError(
      "SIGNATURE_THRESHOLD_NOT_MET",
      `none of the ${upload.signatures.length} uploaded signature(s) is a valid release signature over this manifest; release signatures: ${status.valid} valid of threshold ${status.required}`,
      { details: { role: "release", valid: status.valid, threshold: status.required, missing: status.missing } },
    );
  }
  let envelope: Envelope<Manifest> | null = null;
  if (status.needed === 0) {
    envelope = { signed: pending, signatures };
    // The same check agents make; it cannot fail here, and must not be skipped if the code above changes.
    verifyRoleSignatures(envelope, root, "release");
  }
  return { signatures, added: signatures.length - before.length, status, envelope };
}

export function pendingView(p: StoredPendingRelease, root: Root): PendingReleaseView {
  return {
    id: p.id,
    kind: p.kind,
    name: p.name,
    version: p.version,
    variant: p.variant,
    releaseCounter: p.releaseCounter,
    originSha256: p.originSha256,
    createdAt: p.createdAt,
    signatures: signatureStatus(validReleaseSignatures(p.manifest, p.signatures, root), root),
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

  function pendingUpload(name: string, version: string, variant: string): StoredPendingRelease | null {
    return pending.uploadsOf(name, version).find((p) => p.variant === variant) ?? null;
  }

  async function submit(id: string, upload: SignatureUpload): Promise<SignatureSubmitResult> {
    const p = pending.get(id);
    if (!p) throw new EdgeFleetError("NOT_FOUND", `no pending release ${id}`);
    const collected = collectReleaseSignatures(p.manifest, p.signatures, upload, root());
    const outcome = {
      id,
      kind: p.kind,
      name: p.name,
      version: p.version,
      variant: p.variant,
      releaseCounter: p.releaseCounter,
      added: collected.added,
      signatures: collected.status,
    };
    const envelope = collected.envelope;
    if (!envelope) {
      // Below the threshold: keep what verified, so the next key holder can upload alone.
      pending.setSignatures(id, collected.signatures);
      log.info(
        { model: p.name, version: p.version, variant: p.variant, kind: p.kind, ...collected.status },
        "release signatures collected, more needed",
      );
      return { ...outcome, published: false, bundle: null };
    }
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
      return { ...outcome, published: true, bundle: { sha256: row.sha256, size: row.size } };
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }

  return {
    list() {
      const r = root();
      return { pending: pending.list().map((p) => pendingView(p, r)) };
    },
    get(id: string) {
      const p = pending.get(id);
      if (!p) throw new EdgeFleetError("NOT_FOUND", `no pending release ${id}`);
      return pendingView(p, root());
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
