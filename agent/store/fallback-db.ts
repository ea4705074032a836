import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { isSchemaNewer } from "./schema-migrations.js";
import { asStorageFault } from "./storage-faults.js";

/**
 * A SQLite database that survives its disk (issue 20 §2). It runs on its file while it can; when a
 * write fails with a storage fault (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, ...), or the file
 * cannot even be opened at start, it continues on an in-memory copy of what the file held, so the
 * agent keeps serving and keeps its state, only not durably. `restore()` (called with backoff by
 * the storage monitor) writes the memory copy back to the file once the disk takes writes again.
 *
 * Why a memory copy, not read-only: the agent must go on recording transitions, event numbers and
 * download progress while the disk is full, and must report them; a read-only handle would turn
 * every such write into a crash or a silent loss. The cost is that what happens in memory mode is
 * lost if the process dies before the disk comes back (docs/operations.md "Storage faults").
 */
export type DbMode = "disk" | "memory";

export interface FallbackDb {
  /** The database to use now (the file, or the in-memory copy). Do not keep it across calls. */
  db(): Database.Database;
  mode(): DbMode;
  /** The fault that moved the database to memory, while it is there. */
  fault(): EdgeFleetError | null;
  /**
   * Runs `fn` on the current database. A storage fault on the file moves the database to memory
   * (a copy of the file's committed state; `fn`'s own transaction rolled back) and runs `fn` again
   * there. Other errors propagate. `fn` must be a single statement or one transaction.
   */
  run<T>(fn: (db: Database.Database) => T): T;
  /** A prepared statement for the current database (cached per database). */
  prepare(sql: string): Database.Statement;
  /** Memory mode only: writes the copy back and continues on the file. True when on the file. */
  restore(): boolean;
  close(): void;
}

export interface FallbackDbOptions {
  path: string;
  /** Pragmas and schema; `onDisk` is false for the in-memory copy (no WAL there). */
  init(db: Database.Database, onDisk: boolean): void;
  log: Logger;
  /** Told whenever the mode changes (with the fault when entering memory mode). */
  onModeChange?(mode: DbMode, fault: EdgeFleetError | null): void;
}

/** SQLite header bytes 18/19 are 2 for a WAL database; an in-memory copy must say 1 (rollback journal). */
function asRollbackImage(image: Buffer): Buffer {
  if (image.length >= 20) {
    image[18] = 1;
    image[19] = 1;
  }
  return image;
}

/** The file's committed state as a buffer: through a read-only handle (which sees the WAL), else the main file alone. */
function readImage(path: string, log: Logger): Buffer | null {
  try {
    const ro = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return ro.serialize();
    } finally {
      ro.close();
    }
  } catch (err) {
    log.debug({ err, path }, "read-only open failed; reading the main database file");
  }
  try {
    const image = readFileSync(path);
    return image.length > 0 ? image : null;
  } catch {
    return null;
  }
}

function openMemory(
  image: Buffer | null,
  opts: FallbackDbOptions,
  onSchemaNewer: (err: EdgeFleetError) => void,
): Database.Database {
  if (image) {
    try {
      const db = new Database(asRollbackImage(image));
      opts.init(db, false);
      return db;
    } catch (err) {
      if (isSchemaNewer(err)) onSchemaNewer(err);
      opts.log.error(
        { err, path: opts.path },
        "the database file is unreadable; starting from an empty in-memory copy",
      );
    }
  }
  const db = new Database(":memory:");
  opts.init(db, false);
  return db;
}

function openDisk(opts: FallbackDbOptions): Database.Database {
  const db = new Database(opts.path);
  try {
    opts.init(db, true);
    return db;
  } catch (err) {
    try {
      db.close();
    } catch {
      /* already unusable */
    }
    throw err;
  }
}

/**
 * SQLite says only SQLITE_CANTOPEN when it cannot create its WAL files on a read-only or full disk;
 * a probe file in the same directory names the real cause (EROFS → STORAGE_READ_ONLY, ENOSPC → DISK_FULL).
 */
function preciseFault(fault: EdgeFleetError, path: string): EdgeFleetError {
  if (fault.code !== "STORAGE_FAILED") return fault;
  const probe = `${path}.probe`;
  try {
    const fd = openSync(probe, "w", 0o600);
    try {
      writeSync(fd, Buffer.alloc(4096));
    } finally {
      closeSync(fd);
      rmSync(probe, { force: true });
    }
    return fault;
  } catch (err) {
    return asStorageFault(err, dirname(path)) ?? fault;
  }
}

/** Writes `image` to `path` atomically: temp file, fsync, rename, fsync of the directory. */
function writeImage(path: string, image: Buffer): void {
  const tmp = `${path}.restore`;
  try {
    const fd = openSync(tmp, "w", 0o600);
    try {
      let off = 0;
      while (off < image.length) off += writeSync(fd, image, off, image.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // The old WAL must go before the new file takes the name: a stale WAL would be replayed onto it.
    // A crash in between leaves the old main file alone: older, but consistent.
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export function openFallbackDb(opts: FallbackDbOptions): FallbackDb {
  const { log, path } = opts;
  let current: Database.Database;
  let mode: DbMode = "disk";
  let fault: EdgeFleetError | null = null;
  let statements = new Map<string, Database.Statement>();
  /**
   * Set when the file was written by a newer agent (schema-migrations.ts, issue 23): the memory
   * copy starts empty and is never written back over it, so an upgrade finds the file intact.
   */
  let newerFile: EdgeFleetError | null = null;
  const refuseFile = (err: EdgeFleetError) => {
    newerFile = err;
  };

  const enterMemory = (cause: EdgeFleetError, image: Buffer | null) => {
    current = openMemory(image, opts, refuseFile);
    statements = new Map();
    mode = "memory";
    fault = cause;
    log.error(
      { code: cause.code, path, err: cause.message },
      "database cannot be written; continuing on an in-memory copy (not durable until the disk recovers)",
    );
    opts.onModeChange?.("memory", cause);
  };

  try {
    current = openDisk(opts);
  } catch (err) {
    const f = asStorageFault(err, path);
    if (!f) throw err;
    if (isSchemaNewer(f)) {
      refuseFile(f);
      enterMemory(f, null);
    } else enterMemory(preciseFault(f, path), readImage(path, log));
  }

  const toMemory = (cause: EdgeFleetError) => {
    const disk = current;
    let image: Buffer | null = null;
    try {
      image = disk.serialize(); // the file's committed state: the failed transaction rolled back
    } catch (err) {
      log.warn({ err, path }, "could not copy the database; reading it again from the file");
      image = readImage(path, log);
    }
    // Without a copy, memory mode would start empty and forget what the device runs: fail this
    // one operation instead (the caller handles a thrown storage fault) and try again next time.
    if (!image) throw cause;
    try {
      disk.close();
    } catch {
      /* the disk is failing; nothing more to save from this handle */
    }
    enterMemory(cause, image);
  };

  return {
    db: () => current,
    mode: () => mode,
    fault: () => fault,
    run(fn) {
      if (mode === "memory") return fn(current);
      try {
        return fn(current);
      } catch (err) {
        const f = asStorageFault(err, path);
        if (!f) throw err;
        toMemory(f);
        return fn(current);
      }
    },
    prepare(sql) {
      let s = statements.get(sql);
      if (!s) {
        s = current.prepare(sql);
        statements.set(sql, s);
      }
      return s;
    },
    restore() {
      if (mode === "disk") return true;
      if (newerFile) {
        fault = newerFile;
        return false;
      }
      let disk: Database.Database | null = null;
      try {
        writeImage(path, current.serialize());
        disk = openDisk(opts);
      } catch (err) {
        const f = asStorageFault(err, path);
        if (!f) log.warn({ err, path }, "database restore failed");
        else fault = f;
        try {
          disk?.close();
        } catch {
          /* ignore */
        }
        return false;
      }
      current.close();
      current = disk;
      statements = new Map();
      mode = "disk";
      fault = null;
      log.info({ path }, "database back on disk; the in-memory copy was written back");
      opts.onModeChange?.("disk", null);
      return true;
    },
    close() {
      if (mode === "memory") this.restore();
      if (mode === "memory") {
        log.warn({ path }, "closing while the database is in memory: changes since the storage fault are lost");
      }
      try {
        current.close();
      } catch (err) {
        log.warn({ err, path }, "database close failed");
      }
    },
  };
}
