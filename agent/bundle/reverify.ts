import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalJson } from "../../shared/canonical-json.js";
import { EdgeFleetError, type ErrorCode } from "../../shared/errors.js";
import { sha256File, sha256Hex } from "../../shared/hash.js";
import type { InstalledRef } from "../../shared/schemas/device-state.js";
import { type Manifest, ManifestSchema } from "../../shared/schemas/manifest.js";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import { verifyRoleSignatures } from "../../shared/trust/envelope.js";
import { MANIFEST_ENTRY } from "./entry-checks.js";
import { checkExternalData } from "./onnx-external-data.js";

/**
 * Re-verification of an installed bundle directory right before its model is loaded (issue 7): a
 * local process may have changed the files since they were extracted and hashed (between staging
 * and loading, or on disk between two runs). Every listed file is checked again for size and
 * SHA-256 against a manifest the agent can trust, and every `.onnx` file for external data that
 * points outside the bundle.
 */

/** Codes meaning "the files on disk are not the signed bytes" (the startup path reports these). */
export const INTEGRITY_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BUNDLE_HASH_MISMATCH",
  "BUNDLE_SIZE_MISMATCH",
  "BUNDLE_MISSING_FILE",
  "BUNDLE_UNSAFE_ENTRY",
  "MANIFEST_MISMATCH",
  "SIGNATURE_THRESHOLD_NOT_MET",
]);

export interface ReverifyOptions {
  dir: string;
  model: string;
  ref: InstalledRef;
  /**
   * The signed manifest envelope from the accepted desired state (SQLite), when it still assigns
   * this bundle; otherwise the on-disk `manifest.json` must carry a threshold of release signatures
   * under `root`.
   */
  trusted: Envelope<unknown> | null;
  root: Root;
}

/**
 * Decides whether the on-disk manifest envelope may be trusted for `ref`, and parses it. Pure.
 * Throws MANIFEST_MISMATCH / SIGNATURE_THRESHOLD_NOT_MET.
 */
export function trustInstalledManifest(onDisk: unknown, o: Omit<ReverifyOptions, "dir">): Manifest {
  if (o.trusted !== null) {
    if (canonicalJson(onDisk) !== canonicalJson(o.trusted)) {
      throw new EdgeFleetError("MANIFEST_MISMATCH", `${o.model}: manifest.json differs from the signed manifest`);
    }
  } else {
    const env = onDisk as Envelope<unknown>;
    if (typeof env !== "object" || env === null || !Array.isArray(env.signatures)) {
      throw new EdgeFleetError("MANIFEST_MISMATCH", `${o.model}: manifest.json is not a signed envelope`);
    }
    verifyRoleSignatures(env, o.root, "release");
  }
  const parsed = ManifestSchema.safeParse((onDisk as { signed?: unknown }).signed);
  if (!parsed.success) throw new EdgeFleetError("MANIFEST_MISMATCH", `${o.model}: manifest.json is not a manifest`);
  const m = parsed.data;
  if (m.model.name !== o.model || m.model.version !== o.ref.version || m.model.variant !== o.ref.variant) {
    throw new EdgeFleetError(
      "MANIFEST_MISMATCH",
      `${o.model}: manifest.json names ${m.model.name}@${m.model.version} (${m.model.variant}), expected ${o.ref.version} (${o.ref.variant})`,
    );
  }
  return m;
}

/** Size, SHA-256 and (for `.onnx`) external data of every listed file; throws the first problem. */
export async function reverifyFiles(dir: string, manifest: Manifest): Promise<void> {
  const listed = new Set(manifest.files.map((f) => f.path));
  for (const f of manifest.files) {
    const path = join(dir, f.path);
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(path);
    } catch {
      throw new EdgeFleetError("BUNDLE_MISSING_FILE", `${f.path} is missing from the installed bundle`);
    }
    if (!st.isFile()) throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `${f.path} is no longer a regular file`);
    if (st.size !== f.size) {
      throw new EdgeFleetError("BUNDLE_SIZE_MISMATCH", `${f.path}: ${st.size} bytes on disk, manifest says ${f.size}`);
    }
    const isModel = f.path.endsWith(".onnx");
    // Models are scanned whole for external data anyway; other files are streamed.
    const bytes = isModel ? await readFile(path) : null;
    const { sha256, size } = bytes ? { sha256: sha256Hex(bytes), size: bytes.length } : await sha256File(path);
    if (size !== f.size) {
      throw new EdgeFleetError("BUNDLE_SIZE_MISMATCH", `${f.path}: ${size} bytes on disk, manifest says ${f.size}`);
    }
    if (sha256 !== f.sha256) {
      throw new EdgeFleetError(
        "BUNDLE_HASH_MISMATCH",
        `${f.path}: SHA-256 on disk ${sha256} differs from the manifest (modified after verification)`,
      );
    }
    if (bytes) checkExternalData(bytes, listed);
  }
}

/** Reads and trusts `{dir}/manifest.json`, then re-verifies every file. Returns the manifest. */
export async function reverifyInstalled(o: ReverifyOptions): Promise<Manifest> {
  let onDisk: unknown;
  try {
    onDisk = JSON.parse(await readFile(join(o.dir, MANIFEST_ENTRY), "utf8"));
  } catch (err) {
    throw new EdgeFleetError("MANIFEST_MISMATCH", `${o.model}: cannot read manifest.json: ${(err as Error).message}`);
  }
  const manifest = trustInstalledManifest(onDisk, o);
  await reverifyFiles(o.dir, manifest);
  return manifest;
}
