import { statfs } from "node:fs/promises";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { StorageFaultDetails } from "../store/storage-faults.js";

/**
 * Free space before a download or an extraction starts (issue 20 §2: "check free space against
 * the bundle's size plus extraction and refuse early with DISK_FULL; disk GC first if it can free
 * enough"). The signed assignment gives the bundle's size and the signed manifest every file's
 * size, so the whole need is known before a single byte arrives.
 */

/** Kept free beyond the step's own bytes: SQLite's WAL and journal, logs, file system metadata. */
export const RESERVE_BYTES = 2 * 1024 * 1024;
/** Per extracted file: block rounding and directory entries (generous for 4 KiB blocks). */
const PER_FILE_BYTES = 8 * 1024;

/** Bytes the extracted copy of a bundle takes: every listed file, the manifest, block slack. Pure. */
export function extractionBytes(manifest: Pick<Manifest, "files">, manifestBytes: number): number {
  const files = manifest.files.reduce((a, f) => a + f.size, 0);
  return files + manifestBytes + (manifest.files.length + 2) * PER_FILE_BYTES;
}

export interface SpaceFacts {
  /** The bundle's signed size. */
  bundleSize: number;
  /** Bytes of it already on disk (a resumable `.part`), or the whole size when the `.bundle` is complete. */
  downloaded: number;
  /** Whether the extracted copy already exists (then extraction needs nothing). */
  extracted: boolean;
  extractBytes: number;
  reserveBytes?: number;
}

/** Bytes that must be free before the step starts. Pure. */
export function bytesNeeded(f: SpaceFacts): number {
  const download = Math.max(0, f.bundleSize - f.downloaded);
  const extract = f.extracted ? 0 : f.extractBytes;
  return download + extract + (f.reserveBytes ?? RESERVE_BYTES);
}

export type SpaceDecision = { kind: "ok" } | { kind: "collect" } | { kind: "refuse" };

/** Enough room, or try the disk GC first, or (after it) refuse. Pure. */
export function decideSpace(free: number | null, needed: number, collected: boolean): SpaceDecision {
  if (free === null || free >= needed) return { kind: "ok" }; // unknown: let the write itself tell
  return collected ? { kind: "refuse" } : { kind: "collect" };
}

export async function freeBytes(path: string): Promise<number | null> {
  try {
    const s = await statfs(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/**
 * Throws DISK_FULL (details: path, freeBytes, neededBytes) when `needed` bytes are not free at
 * `path`, after one disk GC run when that might help.
 */
export async function ensureSpace(deps: {
  path: string;
  needed: number;
  what: string;
  log: Logger;
  collectGarbage?: () => Promise<{ bytes: number }>;
}): Promise<void> {
  let free = await freeBytes(deps.path);
  let decision = decideSpace(free, deps.needed, false);
  if (decision.kind === "collect" && deps.collectGarbage) {
    const { bytes } = await deps.collectGarbage();
    deps.log.info({ freed: bytes, needed: deps.needed, free }, "low on space: removed files no model needs");
    free = await freeBytes(deps.path);
    decision = decideSpace(free, deps.needed, true);
  } else if (decision.kind === "collect") {
    decision = { kind: "refuse" };
  }
  if (decision.kind !== "refuse") return;
  const details: StorageFaultDetails = {
    path: deps.path,
    cause: "SPACE_CHECK",
    freeBytes: free,
    neededBytes: deps.needed,
  };
  throw new EdgeFleetError(
    "DISK_FULL",
    `${deps.what} needs ${deps.needed} bytes free in ${deps.path}, only ${free} are`,
    { details: details },
  );
}
