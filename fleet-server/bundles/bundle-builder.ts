import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import * as tar from "tar";
import { sha256File } from "../../shared/hash.js";
import { encodeSamples, SAMPLES_BLOB_FILE, sampleBudgetBytes } from "../../shared/samples-codec.js";
import type { Manifest, ManifestFile, SignedManifest } from "../../shared/schemas/manifest.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import type { KeyPair } from "../../shared/trust/keys.js";

/** Fixed entry mtime so the same inputs always produce the same bytes (and the same bundle id). */
export const BUNDLE_MTIME = new Date(0);
/** architecture.md §2: gzip only where it saves at least 15% of the tar's size. */
export const GZIP_MIN_SAVING = 0.15;

export interface BundleInput {
  /** Manifest minus `files`, which the builder computes from what it actually packs. */
  manifest: Omit<Manifest, "files">;
  modelPath: string;
  samples: SamplesFile;
  modelCard?: string;
  /** Drift baseline (shared/schemas/baseline.ts), written as `baseline.json`. */
  baseline?: unknown;
  releaseKey: KeyPair;
  /** Private, empty working directory; the builder leaves only the bundle file in it. */
  workDir: string;
}

export interface BuiltBundle {
  /** Temp path of the final bundle file, to be committed into the content-addressed store. */
  path: string;
  sha256: string;
  size: number;
  gzipped: boolean;
  manifest: SignedManifest;
}

/**
 * Builds a bundle (architecture.md §2): a tar of `manifest.json` (release-signed envelope), `model.onnx`,
 * `samples.json` and optional `MODEL_CARD.md`. Regular files only, mode 0644, no directory
 * entries, portable headers and a fixed mtime, in a fixed order with the manifest first so an
 * agent can read it before anything else.
 */
export async function buildBundle(input: BundleInput): Promise<BuiltBundle> {
  const dir = join(input.workDir, "content");
  await mkdir(dir, { mode: 0o700 });
  const prepared = await prepareBundleContent(input, dir);
  const signed: Envelope<Manifest> = signEnvelope(prepared.manifest, [input.releaseKey]);
  const built = await packBundle(prepared, signed, input.workDir);
  await rm(dir, { recursive: true, force: true });
  return built;
}

/** A bundle's payload written out, with its (unsigned) manifest: what offline release signing keeps. */
export interface PreparedContent {
  /** Directory holding the payload files (and, once packed, `manifest.json`). */
  dir: string;
  /** Payload file names in bundle order (after `manifest.json`). */
  payload: string[];
  manifest: Manifest;
}

/** Writes the payload files into `dir` (an existing private directory) and computes the manifest. */
export async function prepareBundleContent(
  input: Omit<BundleInput, "releaseKey" | "workDir">,
  dir: string,
): Promise<PreparedContent> {
  const payload: string[] = ["model.onnx", "samples.json", SAMPLES_BLOB_FILE];
  await copyFile(input.modelPath, join(dir, "model.onnx"));
  // Samples as an index plus a compressed binary blob, capped by the model's size (issue 23, lean bundles).
  const { size: modelBytes } = await stat(join(dir, "model.onnx"));
  const { index, blob } = encodeSamples(input.samples, sampleBudgetBytes(modelBytes));
  await writeFile(join(dir, "samples.json"), `${JSON.stringify(index)}\n`);
  await writeFile(join(dir, SAMPLES_BLOB_FILE), blob);
  if (input.modelCard !== undefined) {
    await writeFile(join(dir, "MODEL_CARD.md"), input.modelCard);
    payload.push("MODEL_CARD.md");
  }
  if (input.baseline !== undefined) {
    await writeFile(join(dir, "baseline.json"), `${JSON.stringify(input.baseline)}\n`);
    payload.push("baseline.json");
  }
  const files: ManifestFile[] = [];
  for (const path of payload) {
    await chmod(join(dir, path), 0o644);
    const { sha256, size } = await sha256File(join(dir, path));
    files.push({ path, size, sha256 });
  }
  return { dir, payload, manifest: { ...input.manifest, files } };
}

/**
 * Packs prepared content with its signed manifest into a bundle file in `workDir` (private,
 * empty). Leaves `content.dir` in place (with `manifest.json` written into it).
 */
export async function packBundle(
  content: Pick<PreparedContent, "dir" | "payload">,
  signed: Envelope<Manifest>,
  workDir: string,
): Promise<BuiltBundle> {
  const { dir, payload } = content;
  await writeFile(join(dir, "manifest.json"), `${JSON.stringify(signed, null, 2)}\n`);
  await chmod(join(dir, "manifest.json"), 0o644);

  const tarPath = join(workDir, "bundle.tar");
  await tar.create({ file: tarPath, cwd: dir, portable: true, mtime: BUNDLE_MTIME, noDirRecurse: true, gzip: false }, [
    "manifest.json",
    ...payload,
  ]);
  const tarSize = (await stat(tarPath)).size;

  const gzPath = join(workDir, "bundle.tar.gz");
  // level 9 and Node's zeroed gzip mtime keep the compressed bytes reproducible too.
  await pipeline(createReadStream(tarPath), createGzip({ level: 9 }), createWriteStream(gzPath));
  const gzSize = (await stat(gzPath)).size;
  const gzipped = gzSize <= tarSize * (1 - GZIP_MIN_SAVING);
  const path = gzipped ? gzPath : tarPath;
  await rm(gzipped ? tarPath : gzPath, { force: true });

  const { sha256, size } = await sha256File(path);
  return { path, sha256, size, gzipped, manifest: signed as SignedManifest };
}
