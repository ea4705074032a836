import { mkdir, mkdtemp, open, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { canonicalJson } from "../../shared/canonical-json.js";
import { applyDelta, decodeDelta, deltaFile } from "../../shared/delta/model-delta.js";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import { sha256Hex } from "../../shared/hash.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import { listedFiles, MANIFEST_ENTRY } from "../bundle/entry-checks.js";
import { checkExternalData } from "../bundle/onnx-external-data.js";
import { classifyError } from "../store/storage-faults.js";
import { type DownloadOptions, startDownload } from "./downloader.js";

export interface DeltaOffer {
  sha256: string;
  size: number;
  /** The bundle the delta starts from: the device's committed one. */
  base: string;
}

export interface DeltaInstallOptions {
  model: string;
  /** The target bundle's id (its directory under `models/{model}/`). */
  bundle: string;
  manifest: Manifest;
  /** The signed manifest envelope as in the accepted desired state (written as `manifest.json`). */
  rawManifest: unknown;
  delta: DeltaOffer;
  dirs: { downloads: string; models: string; staging: string };
  /** The download of the delta itself: the same chunk/HTTP path and resumable file as a bundle's. */
  download: Omit<DownloadOptions, "sha256" | "size" | "dir">;
  /** Receives the download's abort, as the bundle download's does (agent shutdown). */
  setAbort(abort: (() => Promise<void>) | null): void;
  /** Fault injection for the crash test: awaited with every file staged and synced, before the rename. */
  beforeRename?: () => Promise<void>;
}

const MODEL_FILE = "model.onnx";

/** A delta failure as the `update.delta` event reports it (code and message; details stay in the log). */
export function errorPayload(err: unknown): { code: string; message: string } {
  const e = toEdgeFleetError(err);
  return { code: e.code, message: e.message };
}

/**
 * Installs a bundle from a tensor-level delta (issue 17) instead of downloading it: downloads the delta (its
 * SHA-256 is director-signed in the assignment, checked by the downloader), rebuilds the model from the
 * committed base, and checks every file against the release-signed manifest *before* anything else sees it.
 * The result is the same directory an extraction of the full bundle gives, built in a private staging dir
 * and renamed into `models/{model}/{bundle}` only after every check, so a crash (even SIGKILL) at any
 * point leaves the committed model untouched and serving, and at worst a staging leftover the disk GC
 * removes. Throws a DELTA_* (or storage) error; the caller then falls back to the full bundle.
 */
export async function installFromDelta(opts: DeltaInstallOptions): Promise<void> {
  const dest = join(opts.dirs.models, opts.model, opts.bundle);
  // The same path rules as extraction (relative, no traversal, no duplicates): staged paths come from here.
  listedFiles(opts.manifest.files);
  const baseModelPath = join(opts.dirs.models, opts.model, opts.delta.base, MODEL_FILE);
  const baseModel = await readFile(baseModelPath).catch(() => {
    throw new EdgeFleetError("DELTA_BASE_MISMATCH", `no committed base ${opts.delta.base} on this device`);
  });
  const dl = startDownload({
    ...opts.download,
    sha256: opts.delta.sha256,
    size: opts.delta.size,
    dir: opts.dirs.downloads,
  });
  opts.setAbort(dl.close);
  let deltaPath: string;
  try {
    deltaPath = await dl.done;
  } finally {
    opts.setAbort(null);
  }
  const decoded = decodeDelta(await readFile(deltaPath));
  // Before allocating anything the header asks for: its target must be the signed model.
  const signedModel = opts.manifest.files.find((f) => f.path === MODEL_FILE);
  if (decoded.header.target.size !== signedModel?.size || decoded.header.target.sha256 !== signedModel.sha256) {
    throw new EdgeFleetError("DELTA_RESULT_MISMATCH", "the delta's target is not the signed model.onnx");
  }
  const files = new Map<string, Buffer>();
  for (const f of opts.manifest.files) {
    const bytes = f.path === MODEL_FILE ? applyDelta(baseModel, decoded) : deltaFile(decoded, f.path);
    if (!bytes) throw new EdgeFleetError("DELTA_INVALID", `delta lacks ${f.path}`);
    // The release-signed hash is the only one that counts: the delta's own header is director-signed only.
    if (bytes.length !== f.size || sha256Hex(bytes) !== f.sha256) {
      throw new EdgeFleetError(
        f.path === MODEL_FILE ? "DELTA_RESULT_MISMATCH" : "DELTA_INVALID",
        `${f.path} rebuilt from the delta differs from the signed manifest`,
      );
    }
    files.set(f.path, bytes);
  }
  const model = files.get(MODEL_FILE);
  if (model) checkExternalData(model, new Set(opts.manifest.files.map((f) => f.path)));
  await stage(opts, dest, files);
  await rm(deltaPath, { force: true }); // served its purpose; the installed files are what is kept
}

async function stage(opts: DeltaInstallOptions, dest: string, files: Map<string, Buffer>): Promise<void> {
  let staging: string;
  try {
    await mkdir(opts.dirs.staging, { recursive: true, mode: 0o700 });
    staging = await mkdtemp(join(opts.dirs.staging, "delta-"));
  } catch (err) {
    throw classifyError(err, "INTERNAL", opts.dirs.staging);
  }
  try {
    // manifest.json as extraction writes it: the canonical form of the signed manifest in the assignment.
    const all: [string, Uint8Array][] = [...files, [MANIFEST_ENTRY, Buffer.from(canonicalJson(opts.rawManifest))]];
    for (const [path, bytes] of all) {
      if (path.includes("/")) await mkdir(dirname(join(staging, path)), { recursive: true, mode: 0o700 });
      const fh = await open(join(staging, path), "wx", 0o600);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fsyncDir(staging);
    await opts.beforeRename?.();
    await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
    await rename(staging, dest);
    await fsyncDir(dirname(dest));
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw classifyError(err, "INTERNAL", staging);
  }
}

async function fsyncDir(path: string): Promise<void> {
  if (!(await stat(path)).isDirectory()) return;
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
