import { createHash } from "node:crypto";
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { type FileHandle, mkdir, mkdtemp, open, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { canonicalJson } from "../../shared/canonical-json.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import { classifyError, ENTRY_NAME_ERRNOS } from "../store/storage-faults.js";
import { writeFully } from "../store/write-fully.js";
import {
  checkComplete,
  DEFAULT_LIMITS,
  decideEntry,
  type ExtractLimits,
  listedFiles,
  MANIFEST_ENTRY,
  newTally,
} from "./entry-checks.js";
import { checkExternalData } from "./onnx-external-data.js";

export interface ExtractOptions {
  /** The downloaded bundle, already verified against its SHA-256 and size. */
  bundlePath: string;
  /** The signed manifest envelope exactly as in the accepted desired state. */
  rawManifest: unknown;
  manifest: Manifest;
  /** Parent for the private staging dir; must be on the same filesystem as `destDir`. */
  stagingParent: string;
  /** Final location, `{dataDir}/models/{model}/{sha256}` (must not exist yet). */
  destDir: string;
  limits?: ExtractLimits;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * Safe extraction of an untrusted bundle (architecture.md §2). tar's Parser only decodes headers; every
 * decision is `decideEntry`'s and every file is written here, by us, under a path we validated,
 * with O_EXCL into a fresh 0700 staging dir. Nothing reaches `destDir` unless every check passed;
 * on failure the staging dir is removed.
 */
export async function extractBundle(opts: ExtractOptions): Promise<string> {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const declaredTotal = opts.manifest.files.reduce((a, f) => a + f.size, 0) + limits.maxManifestBytes;
  const effective = { ...limits, maxTotalBytes: Math.min(limits.maxTotalBytes, declaredTotal) };
  let staging: string;
  try {
    await mkdir(opts.stagingParent, { recursive: true, mode: 0o700 });
    staging = await mkdtemp(join(opts.stagingParent, "stage-")); // mkdtemp creates mode 0700
  } catch (err) {
    throw classifyError(err, "INTERNAL", opts.stagingParent);
  }
  try {
    await extractInto(staging, opts, effective);
    await scanModels(staging, opts.manifest);
    await fsyncPath(staging);
    await mkdir(dirname(opts.destDir), { recursive: true, mode: 0o755 });
    await rename(staging, opts.destDir);
    await fsyncPath(dirname(opts.destDir));
    return opts.destDir;
  } catch (err) {
    // On a read-only or failing disk the clean-up fails too; the next GC removes the leftover.
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw classifyError(err, "INTERNAL", staging);
  }
}

/** ONNX external data must name a file of the bundle (issue 7); refused here, before anything is installed. */
async function scanModels(staging: string, manifest: Manifest): Promise<void> {
  const listed = new Set(manifest.files.map((f) => f.path));
  for (const f of manifest.files) {
    if (f.path.endsWith(".onnx")) checkExternalData(await readFile(join(staging, f.path)), listed);
  }
}

async function isGzip(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(2);
    const { bytesRead } = await fh.read(buf, 0, 2, 0);
    return bytesRead === 2 && buf[0] === GZIP_MAGIC[0] && buf[1] === GZIP_MAGIC[1];
  } finally {
    await fh.close();
  }
}

async function extractInto(staging: string, opts: ExtractOptions, limits: ExtractLimits): Promise<void> {
  const listed = listedFiles(opts.manifest.files);
  const tally = newTally();
  const written: { path: string; fh: FileHandle }[] = [];
  let failure: EdgeFleetError | null = null;
  let manifestText: string | null = null;
  const pending: Promise<void>[] = [];
  // A write that fails for lack of space (or any other I/O fault) is the device's problem, never an
  // unsafe entry: classified first, so the bundle is not condemned for it (issue 20 §2).
  // Name conflicts (EEXIST, ENOTDIR, ...) come from the archive itself and stay unsafe entries.
  const fail = (err: unknown) => {
    const errno = (err as { code?: unknown } | null)?.code;
    const byName = typeof errno === "string" && ENTRY_NAME_ERRNOS.has(errno);
    failure ??= byName
      ? new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `entry conflicts with another: ${(err as Error).message}`)
      : classifyError(err, "BUNDLE_UNSAFE_ENTRY", staging);
  };

  const parser = new Parser({ strict: true, maxMetaEntrySize: 64 * 1024 });
  parser.on("ignoredEntry", (e: ReadEntry) =>
    fail(new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `entry ${JSON.stringify(e.path)} of type ${e.type} not allowed`)),
  );
  parser.on("error", (e: Error) => fail(new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `corrupt archive: ${e.message}`)));
  parser.on("entry", (entry: ReadEntry) => {
    // Entries arrive one at a time; the parser waits for this entry's end before the next.
    const work = handleEntry(entry).catch((err) => {
      fail(err);
      entry.resume(); // drain so the parser does not stall
    });
    pending.push(work);
  });

  async function handleEntry(entry: ReadEntry): Promise<void> {
    if (failure) return void entry.resume();
    const decision = decideEntry({ path: entry.path, type: entry.type, size: entry.size }, listed, tally, limits);
    if (decision.kind === "directory") {
      await mkdir(join(staging, decision.path), { recursive: true, mode: 0o700 });
      entry.resume();
      return;
    }
    const hash = createHash("sha256");
    let size = 0;
    if (decision.kind === "manifest") {
      const parts: Buffer[] = [];
      for await (const chunk of entry) {
        parts.push(chunk);
        size += chunk.length;
      }
      manifestText = Buffer.concat(parts).toString("utf8");
      return;
    }
    await mkdir(dirname(join(staging, decision.path)), { recursive: true, mode: 0o700 });
    const fh = await open(join(staging, decision.path), "wx", 0o600);
    written.push({ path: decision.path, fh });
    for await (const chunk of entry) {
      hash.update(chunk);
      await writeFully(fh, chunk, size);
      size += chunk.length;
    }
    if (size !== decision.expected.size) {
      throw new EdgeFleetError(
        "BUNDLE_SIZE_MISMATCH",
        `${decision.path}: ${size} bytes, manifest says ${decision.expected.size}`,
      );
    }
    const digest = hash.digest("hex");
    if (digest !== decision.expected.sha256) {
      throw new EdgeFleetError("BUNDLE_HASH_MISMATCH", `${decision.path}: SHA-256 ${digest} differs from the manifest`);
    }
  }

  try {
    await feed(opts.bundlePath, parser, limits);
    await Promise.all(pending);
    if (failure) throw failure;
    checkComplete(listed, tally);
    if (manifestText === null) throw new EdgeFleetError("BUNDLE_MISSING_FILE", "bundle lacks manifest.json");
    let parsed: unknown;
    try {
      parsed = JSON.parse(manifestText);
    } catch {
      throw new EdgeFleetError("MANIFEST_MISMATCH", "manifest.json is not JSON");
    }
    if (canonicalJson(parsed) !== canonicalJson(opts.rawManifest)) {
      throw new EdgeFleetError(
        "MANIFEST_MISMATCH",
        "manifest.json differs from the signed manifest in the desired state",
      );
    }
    const mfh = await open(join(staging, MANIFEST_ENTRY), "wx", 0o600);
    written.push({ path: MANIFEST_ENTRY, fh: mfh });
    await mfh.write(canonicalJson(opts.rawManifest));
    for (const w of written) await w.fh.sync();
  } finally {
    await Promise.all(written.map((w) => w.fh.close().catch(() => undefined)));
  }
}

/** Streams the file (gunzipping when it starts with 1f 8b) into the parser with a byte cap. */
async function feed(path: string, parser: Parser, limits: ExtractLimits): Promise<void> {
  const gz = await isGzip(path);
  const file = createReadStream(path, { highWaterMark: 256 * 1024 });
  const source = gz ? file.pipe(createGunzip()) : file;
  // Headers and padding on top of declared sizes: 1 KiB per entry plus end-of-archive blocks is ample.
  const cap = limits.maxTotalBytes + (limits.maxEntries + 4) * 1024 + 64 * 1024;
  let total = 0;
  let first = true;
  const done = new Promise<void>((resolve) => {
    // After a failure we keep feeding (bounded by `cap`) so the entry in progress drains and
    // ends; stopping mid-body would leave its reader waiting forever.
    for (const ev of ["end", "close", "abort"]) parser.once(ev, () => resolve());
  });
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (first) {
        // A tar archive starts with a ustar header; anything else (including a second
        // compression layer, which tar's Parser would otherwise unpack itself) is refused.
        if (chunk.length < 263 || chunk.subarray(257, 262).toString("latin1") !== "ustar") {
          throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", "bundle is not a ustar archive");
        }
        first = false;
      }
      total += chunk.length;
      if (total > cap) throw new EdgeFleetError("BUNDLE_TOO_LARGE", `archive expands beyond ${cap} bytes`);
      if (!parser.write(chunk)) await once(parser, "drain");
    }
    if (first) throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", "bundle is empty");
  } finally {
    file.destroy();
    if (source !== file) (source as NodeJS.ReadableStream & { destroy(): void }).destroy();
  }
  parser.end();
  await done;
}

async function fsyncPath(path: string): Promise<void> {
  const s = await stat(path);
  if (!s.isDirectory()) return;
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
