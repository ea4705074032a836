import { z } from "zod";
import { type Manifest, ManifestSchema, type SignedManifest } from "../../shared/schemas/manifest.js";
import { type Signature, SignatureSchema } from "../../shared/schemas/trust.js";
import type { Db } from "./db.js";
import type { BundleRow } from "./model-repo.js";
import { decodeJson, decodeSignedJson, decodeValue } from "./row-codec.js";

/**
 * Releases built without the release key (offline release signing, docs/security.md): the
 * payload is ready in `pending/{id}/`, the manifest waits for a threshold of release signatures.
 * `upload`: a variant of a new version; `re-release`: old bytes under a new counter (a rollback).
 */
export interface PendingReleaseRow {
  /** SHA-256 of the canonical JSON of `manifest` (it carries the release counter, so it is unique). */
  id: string;
  kind: "upload" | "re-release";
  name: string;
  version: string;
  variant: string;
  releaseCounter: number;
  manifest: Manifest;
  /** Payload file names in bundle order. */
  payload: string[];
  originSha256: string | null;
  createdAt: string;
}

/** A pending release as read back, with the signatures collected so far. */
export interface StoredPendingRelease extends PendingReleaseRow {
  signatures: Signature[];
}

interface RawPending {
  id: string;
  kind: string;
  name: string;
  version: string;
  variant: string;
  release_counter: number;
  manifest: string;
  payload: string;
  origin_sha256: string | null;
  created_at: string;
  signatures: string;
}

const KindSchema = z.enum(["upload", "re-release"]);
const PayloadSchema = z.array(z.string().min(1));
const SignaturesSchema = z.array(SignatureSchema);

const pendingRow = (r: RawPending): StoredPendingRelease => {
  const at = (column: string) => ({ table: "pending_releases", key: `id=${r.id}`, column });
  return {
    id: r.id,
    kind: decodeValue(KindSchema, r.kind, at("kind")),
    name: r.name,
    version: r.version,
    variant: r.variant,
    releaseCounter: r.release_counter,
    manifest: decodeSignedJson(ManifestSchema, r.manifest, at("manifest")),
    payload: decodeJson(PayloadSchema, r.payload, at("payload")),
    originSha256: r.origin_sha256,
    createdAt: r.created_at,
    signatures: decodeJson(SignaturesSchema, r.signatures, at("signatures")),
  };
};

/** Inserts a pending release (inside the caller's transaction when there is one). */
export function insertPendingRow(db: Db, p: PendingReleaseRow): void {
  db.prepare(
    "INSERT INTO pending_releases (id, kind, name, version, variant, release_counter, manifest, payload, origin_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  ).run(
    p.id,
    p.kind,
    p.name,
    p.version,
    p.variant,
    p.releaseCounter,
    JSON.stringify(p.manifest),
    JSON.stringify(p.payload),
    p.originSha256,
    p.createdAt,
  );
}

export function createPendingReleaseRepo(db: Db) {
  return {
    insert(p: PendingReleaseRow): void {
      insertPendingRow(db, p);
    },
    get(id: string): StoredPendingRelease | null {
      const r = db.prepare("SELECT * FROM pending_releases WHERE id = ?").get(id) as RawPending | undefined;
      return r ? pendingRow(r) : null;
    },
    list(): StoredPendingRelease[] {
      return (db.prepare("SELECT * FROM pending_releases ORDER BY created_at, id").all() as RawPending[]).map(
        pendingRow,
      );
    },
    /** Pending variants of a version built on upload. */
    uploadsOf(name: string, version: string): StoredPendingRelease[] {
      return (
        db
          .prepare("SELECT * FROM pending_releases WHERE kind = 'upload' AND name = ? AND version = ? ORDER BY variant")
          .all(name, version) as RawPending[]
      ).map(pendingRow);
    },
    /** The pending re-release of `originSha256`, if one waits. */
    reReleaseOf(originSha256: string): StoredPendingRelease | null {
      const r = db
        .prepare("SELECT * FROM pending_releases WHERE kind = 're-release' AND origin_sha256 = ?")
        .get(originSha256) as RawPending | undefined;
      return r ? pendingRow(r) : null;
    },
    /** Replaces the signatures collected for a pending release (false: it is no longer pending). */
    setSignatures(id: string, signatures: Signature[]): boolean {
      return (
        db.prepare("UPDATE pending_releases SET signatures = ? WHERE id = ?").run(JSON.stringify(signatures), id)
          .changes === 1
      );
    },
    /** Swaps a pending release for its signed bundle row, atomically. */
    publish(id: string, bundle: BundleRow, signed: SignedManifest): void {
      db.transaction(() => {
        const p = db.prepare("SELECT * FROM pending_releases WHERE id = ?").get(id) as RawPending | undefined;
        if (!p) throw new Error(`pending release ${id} vanished`);
        const values = [
          bundle.sha256,
          bundle.size,
          bundle.name,
          bundle.version,
          bundle.variant,
          bundle.releaseCounter,
          JSON.stringify(signed),
        ];
        if (p.kind === "re-release") {
          db.prepare(
            "INSERT INTO re_releases (sha256, size, name, version, variant, release_counter, manifest, origin_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          ).run(...values, p.origin_sha256, bundle.createdAt);
        } else {
          db.prepare(
            "INSERT INTO bundles (sha256, size, name, version, variant, release_counter, manifest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          ).run(...values, bundle.createdAt);
        }
        db.prepare("DELETE FROM pending_releases WHERE id = ?").run(id);
      })();
    },
  };
}
export type PendingReleaseRepo = ReturnType<typeof createPendingReleaseRepo>;
