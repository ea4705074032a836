import { constants } from "node:os";
import { describe, expect, it } from "vitest";
import {
  asStorageFault,
  ENTRY_NAME_ERRNOS,
  ERRNO_TABLE,
  SQLITE_TABLE,
  STORAGE_CODES,
  storageCodeOf,
} from "../../../agent/store/storage-faults.js";
import { planUpdate } from "../../../agent/updater/plan-update.js";
import { bytesNeeded, decideSpace, extractionBytes, RESERVE_BYTES } from "../../../agent/updater/space-check.js";
import { CONDEMNS_BUNDLE, marksBundleBad } from "../../../agent/updater/verdicts.js";
import { EdgeFleetError, ERROR_CODES } from "../../../shared/errors.js";
import type { DesiredState } from "../../../shared/schemas/desired-state.js";

/**
 * Issue 20 §2: one classification table of local I/O errors, tested exhaustively; only errors that
 * prove a bundle bad condemn it.
 */

/** The codes that condemn a bundle: the bytes or manifest are wrong, or the model fails on the device. */
const CONDEMNING = [
  "BUNDLE_HASH_MISMATCH",
  "BUNDLE_SIZE_MISMATCH",
  "BUNDLE_UNSAFE_ENTRY",
  "BUNDLE_UNLISTED_ENTRY",
  "BUNDLE_MISSING_FILE",
  "BUNDLE_TOO_LARGE",
  "BUNDLE_SAMPLES_INVALID",
  "MANIFEST_MISMATCH",
  "MODEL_LOAD_FAILED",
  "SMOKE_TEST_FAILED",
  "HOST_CRASHED",
  "LATENCY_REGRESSION",
  "ERROR_RATE_EXCEEDED",
  "NON_FINITE_OUTPUT",
  "MEMORY_BUDGET_EXCEEDED",
];

/** SQLite's extended result codes (sqlite.org/rescode.html) of the storage families. */
const SQLITE_EXTENDED_STORAGE = [
  ...[
    "READ",
    "SHORT_READ",
    "WRITE",
    "FSYNC",
    "DIR_FSYNC",
    "TRUNCATE",
    "FSTAT",
    "UNLOCK",
    "RDLOCK",
    "DELETE",
    "NOMEM",
    "ACCESS",
    "CHECKRESERVEDLOCK",
    "LOCK",
    "CLOSE",
    "DIR_CLOSE",
    "SHMOPEN",
    "SHMLOCK",
    "SHMMAP",
    "SEEK",
    "DELETE_NOENT",
    "MMAP",
    "GETTEMPPATH",
    "CONVPATH",
    "VNODE",
    "AUTH",
    "BEGIN_ATOMIC",
    "COMMIT_ATOMIC",
    "ROLLBACK_ATOMIC",
    "DATA",
    "CORRUPTFS",
  ].map((s) => [`SQLITE_IOERR_${s}`, "STORAGE_FAILED"]),
  ["SQLITE_IOERR_SHMSIZE", "DISK_FULL"],
  ...["RECOVERY", "CANTLOCK", "ROLLBACK", "DBMOVED", "CANTINIT", "DIRECTORY"].map((s) => [
    `SQLITE_READONLY_${s}`,
    "STORAGE_READ_ONLY",
  ]),
  ...["NOTEMPDIR", "ISDIR", "FULLPATH", "CONVPATH", "SYMLINK"].map((s) => [`SQLITE_CANTOPEN_${s}`, "STORAGE_FAILED"]),
  ...["VTAB", "SEQUENCE", "INDEX"].map((s) => [`SQLITE_CORRUPT_${s}`, "STORAGE_FAILED"]),
] as const;

/** SQLite codes that are our own bugs or the caller's, never the disk. */
const SQLITE_NOT_STORAGE = [
  "SQLITE_ERROR",
  "SQLITE_INTERNAL",
  "SQLITE_ABORT",
  "SQLITE_INTERRUPT",
  "SQLITE_SCHEMA",
  "SQLITE_TOOBIG",
  "SQLITE_CONSTRAINT",
  "SQLITE_CONSTRAINT_UNIQUE",
  "SQLITE_CONSTRAINT_PRIMARYKEY",
  "SQLITE_MISMATCH",
  "SQLITE_MISUSE",
  "SQLITE_RANGE",
  // contention, not the disk
  "SQLITE_BUSY",
  "SQLITE_BUSY_RECOVERY",
  "SQLITE_BUSY_SNAPSHOT",
  "SQLITE_BUSY_TIMEOUT",
  "SQLITE_LOCKED",
  "SQLITE_LOCKED_SHAREDCACHE",
];

describe("storage fault classification (issue 20 §2)", () => {
  it("every errno the table names is a real errno (or Linux's EUCLEAN) and maps to its code", () => {
    for (const [errno, code] of Object.entries(ERRNO_TABLE)) {
      if (errno !== "EUCLEAN") expect(Object.keys(constants.errno)).toContain(errno);
      expect(storageCodeOf(errno)).toBe(code);
      expect(STORAGE_CODES).toContain(code);
    }
    expect(storageCodeOf("ENOSPC")).toBe("DISK_FULL");
    expect(storageCodeOf("EDQUOT")).toBe("DISK_FULL");
    expect(storageCodeOf("EROFS")).toBe("STORAGE_READ_ONLY");
    for (const e of ["EIO", "EMFILE", "ENFILE"]) expect(storageCodeOf(e)).toBe("STORAGE_FAILED");
  });

  it("every errno Node knows, raised by a system call, is a storage fault that never condemns a bundle", () => {
    const names = Object.keys(constants.errno);
    expect(names.length).toBeGreaterThan(60);
    for (const errno of names) {
      const code = storageCodeOf(errno, { syscall: true });
      expect(code, errno).not.toBeNull();
      expect(marksBundleBad(code!), errno).toBe(false);
      const fault = asStorageFault(Object.assign(new Error(errno), { code: errno, syscall: "write", path: "/x" }));
      expect(fault?.code, errno).toBe(code);
      expect(fault?.details).toMatchObject({ path: "/x", cause: errno });
    }
  });

  it("every SQLite storage code, primary and extended, maps by its family; SQLite's other codes are not storage", () => {
    for (const [sqlite, code] of Object.entries(SQLITE_TABLE)) expect(storageCodeOf(sqlite)).toBe(code);
    expect(storageCodeOf("SQLITE_FULL")).toBe("DISK_FULL");
    expect(storageCodeOf("SQLITE_READONLY")).toBe("STORAGE_READ_ONLY");
    for (const [sqlite, code] of SQLITE_EXTENDED_STORAGE) expect(storageCodeOf(sqlite), sqlite).toBe(code);
    for (const sqlite of SQLITE_NOT_STORAGE) {
      expect(storageCodeOf(sqlite), sqlite).toBeNull();
      expect(asStorageFault(Object.assign(new Error(sqlite), { code: sqlite }))).toBeNull();
    }
  });

  it("while extracting, name conflicts stay BUNDLE_UNSAFE_ENTRY; every other errno is the disk's", () => {
    expect([...ENTRY_NAME_ERRNOS].sort()).toEqual(["EEXIST", "EISDIR", "ELOOP", "ENAMETOOLONG", "ENOTDIR"]);
    for (const errno of ENTRY_NAME_ERRNOS) expect(Object.keys(constants.errno)).toContain(errno);
    for (const errno of ["ENOSPC", "EDQUOT", "EROFS", "EIO", "EMFILE", "ENFILE"])
      expect(ENTRY_NAME_ERRNOS.has(errno)).toBe(false);
  });

  it("an error code without a system call behind it, or an EdgeFleetError of another code, is never reclassified", () => {
    expect(asStorageFault(Object.assign(new Error("x"), { code: "ERR_INVALID_ARG_TYPE" }))).toBeNull();
    expect(asStorageFault(Object.assign(new Error("x"), { code: "EWHATEVER" }))).toBeNull();
    expect(asStorageFault(new EdgeFleetError("BUNDLE_HASH_MISMATCH", "bad"))).toBeNull();
    const disk = new EdgeFleetError("DISK_FULL", "full");
    expect(asStorageFault(disk)).toBe(disk);
    expect(asStorageFault("ENOSPC")).toBeNull();
  });

  it("the bundle verdict table covers every error code; exactly the codes that prove a bundle bad condemn it", () => {
    expect(Object.keys(CONDEMNS_BUNDLE).sort()).toEqual([...ERROR_CODES].sort());
    const condemning = ERROR_CODES.filter((c) => marksBundleBad(c));
    expect(condemning.sort()).toEqual([...CONDEMNING].sort());
    for (const code of STORAGE_CODES) expect(marksBundleBad(code)).toBe(false);
  });
});

const sha = (c: string) => c.repeat(64);
const ref = (c: string) => ({ version: "2.0.0", variant: "fp32" as const, sha256: sha(c), releaseCounter: 2 });
const desired = (c: string) =>
  ({
    assignments: [{ model: "m", bundle: { sha256: sha(c), size: 10 }, releaseCounter: 2 }],
  }) as unknown as DesiredState;

describe("a storage fault leaves the same bundle retryable (issue 20 §2)", () => {
  it("a candidate failed for the disk is installed again; one failed for itself is not", () => {
    const failed = (code: string) => [
      { model: "m", state: "failed" as const, committed: ref("a"), candidate: ref("b"), error: { code } },
    ];
    for (const code of ["DISK_FULL", "STORAGE_READ_ONLY", "STORAGE_FAILED"]) {
      expect(planUpdate(failed(code), desired("b"))[0]?.kind, code).toBe("install");
    }
    for (const code of ["SMOKE_TEST_FAILED", "BUNDLE_HASH_MISMATCH", "INCOMPATIBLE", "DOWNLOAD_FAILED"]) {
      expect(planUpdate(failed(code), desired("b"))[0], code).toMatchObject({ kind: "noop", reason: "already-failed" });
    }
  });

  it("a repair of the committed bundle stopped by the disk is left to self-repair's own retry", () => {
    const rec = [
      { model: "m", state: "failed" as const, committed: ref("a"), candidate: ref("a"), error: { code: "DISK_FULL" } },
    ];
    expect(planUpdate(rec, desired("a"))[0]).toMatchObject({ kind: "noop" });
  });
});

describe("free space before a download (issue 20 §2)", () => {
  const extract = extractionBytes({ files: [{ size: 5_000_000 }, { size: 1000 }] as never }, 2000);

  it("needs the rest of the bundle plus the extraction plus a reserve", () => {
    expect(extract).toBeGreaterThan(5_003_000);
    expect(bytesNeeded({ bundleSize: 6_000_000, downloaded: 0, extracted: false, extractBytes: extract })).toBe(
      6_000_000 + extract + RESERVE_BYTES,
    );
    expect(bytesNeeded({ bundleSize: 6_000_000, downloaded: 4_000_000, extracted: false, extractBytes: extract })).toBe(
      2_000_000 + extract + RESERVE_BYTES,
    );
    expect(bytesNeeded({ bundleSize: 6_000_000, downloaded: 6_000_000, extracted: true, extractBytes: extract })).toBe(
      RESERVE_BYTES,
    );
  });

  it("collects garbage first, then refuses; unknown free space lets the write decide", () => {
    expect(decideSpace(10, 5, false)).toEqual({ kind: "ok" });
    expect(decideSpace(1, 5, false)).toEqual({ kind: "collect" });
    expect(decideSpace(1, 5, true)).toEqual({ kind: "refuse" });
    expect(decideSpace(null, 5, false)).toEqual({ kind: "ok" });
  });
});
