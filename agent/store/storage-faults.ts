import { statfsSync } from "node:fs";
import { EdgeFleetError, type ErrorCode } from "../../shared/errors.js";

/**
 * Local storage faults (issue 20 §2): one table from the error codes the OS (errno names, as
 * Node's `err.code`) and SQLite (better-sqlite3's `SqliteError.code`, extended result codes) give
 * us to our three storage codes. A storage fault is a circumstance of the device, never evidence
 * against a bundle: `marksBundleBad` (verdicts.ts) refuses all three, and the test checks every
 * entry of this table against it.
 */
export const STORAGE_CODES = ["DISK_FULL", "STORAGE_READ_ONLY", "STORAGE_FAILED"] as const;
export type StorageCode = (typeof STORAGE_CODES)[number];

export function isStorageCode(code: string | undefined | null): code is StorageCode {
  return (STORAGE_CODES as readonly string[]).includes(code ?? "");
}

/**
 * errno names → storage code. Anything else raised by a system call (an `err.syscall` is present)
 * is STORAGE_FAILED too: a failing read or write of our own files says nothing about a bundle.
 */
export const ERRNO_TABLE: Readonly<Record<string, StorageCode>> = {
  ENOSPC: "DISK_FULL",
  EDQUOT: "DISK_FULL",
  EFBIG: "DISK_FULL",
  EROFS: "STORAGE_READ_ONLY",
  EACCES: "STORAGE_READ_ONLY",
  EPERM: "STORAGE_READ_ONLY",
  EIO: "STORAGE_FAILED",
  EMFILE: "STORAGE_FAILED",
  ENFILE: "STORAGE_FAILED",
  ENOMEM: "STORAGE_FAILED",
  EBUSY: "STORAGE_FAILED",
  EAGAIN: "STORAGE_FAILED",
  ESTALE: "STORAGE_FAILED",
  ENXIO: "STORAGE_FAILED",
  ENODEV: "STORAGE_FAILED",
  EUCLEAN: "STORAGE_FAILED",
  ENOTCONN: "STORAGE_FAILED",
  ETIMEDOUT: "STORAGE_FAILED",
};

/**
 * SQLite primary result codes → storage code; extended codes (`SQLITE_IOERR_WRITE`,
 * `SQLITE_READONLY_DBMOVED`, ...) are classified by their primary prefix. SQLITE_CONSTRAINT,
 * SQLITE_ERROR (bad SQL), SQLITE_MISUSE and the like are our bugs, not storage faults: absent.
 * SQLITE_BUSY / SQLITE_LOCKED are contention (another connection holds a lock past busy_timeout),
 * not a disk that fails: absent too, so a busy file never sends a store to memory.
 */
export const SQLITE_TABLE: Readonly<Record<string, StorageCode>> = {
  SQLITE_FULL: "DISK_FULL",
  SQLITE_READONLY: "STORAGE_READ_ONLY",
  SQLITE_PERM: "STORAGE_READ_ONLY",
  SQLITE_AUTH: "STORAGE_READ_ONLY",
  SQLITE_IOERR: "STORAGE_FAILED",
  SQLITE_CANTOPEN: "STORAGE_FAILED",
  SQLITE_CORRUPT: "STORAGE_FAILED",
  SQLITE_NOTADB: "STORAGE_FAILED",
  SQLITE_NOMEM: "STORAGE_FAILED",
  SQLITE_PROTOCOL: "STORAGE_FAILED",
  SQLITE_NOLFS: "STORAGE_FAILED",
};

/**
 * Errors that writing an archive entry under a validated name can only get from the archive's own
 * structure (a file where a directory must go, a name this file system cannot hold): extraction
 * keeps these as BUNDLE_UNSAFE_ENTRY (agent/bundle/safe-extract.ts). Everything else a system
 * call raises while extracting is the device's disk.
 */
export const ENTRY_NAME_ERRNOS: ReadonlySet<string> = new Set(["EEXIST", "ENOTDIR", "EISDIR", "ELOOP", "ENAMETOOLONG"]);

/** SQLite's extended codes whose errno behind them is a full disk (the primary says only IOERR). */
const SQLITE_FULL_EXTENDED = new Set(["SQLITE_IOERR_SHMSIZE"]);

/** The storage code for a raw error `code` (errno name or SQLite code), or null. Pure. */
export function storageCodeOf(code: string, opts: { syscall?: boolean } = {}): StorageCode | null {
  if (code in ERRNO_TABLE) return ERRNO_TABLE[code] as StorageCode;
  if (code.startsWith("SQLITE_")) {
    if (SQLITE_FULL_EXTENDED.has(code)) return "DISK_FULL";
    const primary = /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code;
    return SQLITE_TABLE[primary] ?? null;
  }
  // Node system errors carry `syscall`; an errno we did not list is still a local I/O failure.
  return opts.syscall && /^E[A-Z0-9]+$/.test(code) ? "STORAGE_FAILED" : null;
}

export interface StorageFaultDetails {
  /** The file or directory the failed operation was about (or the data dir when unknown). */
  path: string | null;
  /** The OS or SQLite code behind it (`ENOSPC`, `SQLITE_FULL`, ...). */
  cause: string;
  /** Free bytes on the file system of `path` when it was measured, else null. */
  freeBytes?: number | null;
  /** Bytes the step needed, when it was refused before it started (space check). */
  neededBytes?: number;
}

/**
 * The storage fault behind `err` as an EdgeFleetError, or null when `err` is not one. An
 * EdgeFleetError that already carries a storage code is returned as is; one with another code is
 * never reclassified (a hash mismatch stays one). `path` names what was being written when the
 * error itself does not say.
 */
export function asStorageFault(err: unknown, path: string | null = null): EdgeFleetError | null {
  if (err instanceof EdgeFleetError) return isStorageCode(err.code) ? err : null;
  if (typeof err !== "object" || err === null) return null;
  const e = err as { code?: unknown; syscall?: unknown; path?: unknown; message?: unknown };
  if (typeof e.code !== "string") return null;
  const code = storageCodeOf(e.code, { syscall: typeof e.syscall === "string" });
  if (!code) return null;
  const where = typeof e.path === "string" ? e.path : path;
  const details: StorageFaultDetails = { path: where, cause: e.code };
  const message = `${describe(code)}${where ? ` (${where})` : ""}: ${typeof e.message === "string" ? e.message : e.code}`;
  return new EdgeFleetError(code, message, { details: details, cause: err });
}

/** `asStorageFault(err)` or, when it is none, `err` as an EdgeFleetError with `fallback`. */
export function classifyError(err: unknown, fallback: ErrorCode, path: string | null = null): EdgeFleetError {
  const fault = asStorageFault(err, path);
  if (fault) return fault;
  if (err instanceof EdgeFleetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EdgeFleetError(fallback, message, { cause: err });
}

function describe(code: StorageCode): string {
  if (code === "DISK_FULL") return "no space left on the device's data directory";
  if (code === "STORAGE_READ_ONLY") return "the device's data directory cannot be written";
  return "local storage I/O failed";
}

/** Free bytes for an unprivileged writer on the file system holding `path`, or null. */
export function freeBytesAt(path: string): number | null {
  try {
    const s = statfsSync(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** `e` with `details.freeBytes` measured now (statfs of its path, else `fallbackPath`) when it lacks them. */
export function withFreeBytes(e: EdgeFleetError, fallbackPath: string): EdgeFleetError {
  const d = (e.details ?? {}) as Partial<StorageFaultDetails>;
  if (typeof d.freeBytes === "number") return e;
  const freeBytes = (typeof d.path === "string" ? freeBytesAt(d.path) : null) ?? freeBytesAt(fallbackPath);
  const details: StorageFaultDetails = { path: d.path ?? null, cause: d.cause ?? e.code, ...d, freeBytes };
  return new EdgeFleetError(e.code, e.message, { details: details, cause: e });
}
