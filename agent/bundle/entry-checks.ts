import { EdgeFleetError } from "../../shared/errors.js";
import type { ManifestFile } from "../../shared/schemas/manifest.js";

/** Limits on an untrusted archive (architecture.md §2 "cap entry count and total size"). */
export interface ExtractLimits {
  maxEntries: number;
  maxTotalBytes: number;
  /** manifest.json is read into memory to compare it; keep it small. */
  maxManifestBytes: number;
}

export const DEFAULT_LIMITS: ExtractLimits = {
  maxEntries: 64,
  maxTotalBytes: 2 * 1024 * 1024 * 1024,
  maxManifestBytes: 1024 * 1024,
};

export const MANIFEST_ENTRY = "manifest.json";

export interface EntryHeader {
  path: string;
  type: string;
  size: number;
}

export type EntryDecision =
  | { kind: "directory"; path: string }
  | { kind: "file"; path: string; expected: ManifestFile }
  | { kind: "manifest"; path: string };

/** Running totals across entries; the caller owns one per archive. */
export interface EntryTally {
  seen: Set<string>;
  entries: number;
  declaredBytes: number;
}

export function newTally(): EntryTally {
  return { seen: new Set(), entries: 0, declaredBytes: 0 };
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);

/**
 * Syntactic safety of an archive path (architecture.md §2): relative, no `..`/`.`/empty segments,
 * no backslashes (a Windows separator that later code might honour), no NUL, no control chars.
 */
export function checkEntryPath(path: string): void {
  const bad = (why: string) =>
    new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `unsafe entry ${JSON.stringify(path)}: ${why}`);
  if (path.length === 0 || path.length > 255) throw bad("empty or too long");
  if (path.startsWith("/")) throw bad("absolute path");
  if (path.includes("\\")) throw bad("backslash");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL and control characters are exactly what we reject
  if (/[\u0000-\u001f\u007f]/.test(path)) throw bad("NUL or control character");
  for (const seg of path.split("/")) {
    if (seg === "..") throw bad("parent traversal");
    if (seg === "." || seg === "") throw bad("'.' or empty segment");
  }
}

/**
 * Decides what to do with one tar header, before any byte of it is written. Pure.
 * Invariant: a returned "file" decision names a path listed in the signed manifest whose declared
 * size equals the manifest's, so the total written is bounded by the (capped) manifest total.
 */
export function decideEntry(
  header: EntryHeader,
  listed: ReadonlyMap<string, ManifestFile>,
  tally: EntryTally,
  limits: ExtractLimits,
): EntryDecision {
  tally.entries += 1;
  if (tally.entries > limits.maxEntries) {
    throw new EdgeFleetError("BUNDLE_TOO_LARGE", `archive has more than ${limits.maxEntries} entries`);
  }
  const isDir = header.type === "Directory";
  if (!isDir && !FILE_TYPES.has(header.type)) {
    throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `entry ${JSON.stringify(header.path)} has type ${header.type}`);
  }
  const path = isDir && header.path.endsWith("/") ? header.path.slice(0, -1) : header.path;
  checkEntryPath(path);
  if (tally.seen.has(path)) throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `duplicate entry ${JSON.stringify(path)}`);
  tally.seen.add(path);

  if (isDir) {
    const prefix = `${path}/`;
    const needed = [...listed.keys()].some((p) => p.startsWith(prefix));
    if (!needed) throw new EdgeFleetError("BUNDLE_UNLISTED_ENTRY", `directory ${path} holds no listed file`);
    return { kind: "directory", path };
  }
  tally.declaredBytes += header.size;
  if (tally.declaredBytes > limits.maxTotalBytes) {
    throw new EdgeFleetError("BUNDLE_TOO_LARGE", `archive declares more than ${limits.maxTotalBytes} bytes`);
  }
  if (path === MANIFEST_ENTRY) {
    if (header.size > limits.maxManifestBytes) {
      throw new EdgeFleetError("BUNDLE_TOO_LARGE", `manifest.json larger than ${limits.maxManifestBytes} bytes`);
    }
    return { kind: "manifest", path };
  }
  const expected = listed.get(path);
  if (!expected)
    throw new EdgeFleetError("BUNDLE_UNLISTED_ENTRY", `entry ${JSON.stringify(path)} is not in the manifest`);
  if (header.size !== expected.size) {
    throw new EdgeFleetError(
      "BUNDLE_SIZE_MISMATCH",
      `entry ${path}: ${header.size} bytes, manifest says ${expected.size}`,
    );
  }
  return { kind: "file", path, expected };
}

/** After the last entry: every listed file and the manifest must have been present. */
export function checkComplete(listed: ReadonlyMap<string, ManifestFile>, tally: EntryTally): void {
  for (const p of [MANIFEST_ENTRY, ...listed.keys()]) {
    if (!tally.seen.has(p)) throw new EdgeFleetError("BUNDLE_MISSING_FILE", `bundle lacks ${p}`);
  }
}

/** Manifest file list as a map; the signed manifest itself must be sane (no duplicates, no manifest.json). */
export function listedFiles(files: readonly ManifestFile[]): Map<string, ManifestFile> {
  const map = new Map<string, ManifestFile>();
  for (const f of files) {
    checkEntryPath(f.path);
    if (f.path === MANIFEST_ENTRY || map.has(f.path)) {
      throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `manifest lists ${f.path} twice or lists manifest.json`);
    }
    map.set(f.path, f);
  }
  return map;
}
