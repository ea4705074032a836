import { createHash } from "node:crypto";
import { type FileHandle, open, stat } from "node:fs/promises";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

/**
 * Bundles being downloaded, kept ready for chunk requests (issue 17): each is opened, read and its
 * SHA-256 checked against its name once, then served from memory (or, past the memory budget, from
 * the open file) until idle. Before, every chunk request did a `stat`, and a read into a fresh buffer.
 *
 * Bounds: bundles in memory total at most `maxBytes` (least recently used dropped first); one bigger
 * than half of it is served from its open file instead (verified once the same way, by reading it
 * through); at most `maxOpen` bundles are held; an entry unused for `idleMs` is dropped. A bundle
 * whose bytes do not match its name is refused (`BUNDLE_HASH_MISMATCH`, logged) and the refusal is
 * remembered for `idleMs`, so a device asking again does not re-hash it for every request.
 *
 * The store stays the truth: at most once a second (`VALIDATE_MS`) a request checks that the file
 * is still there and is the one that was verified (inode, size, mtime). A removed bundle is
 * NOT_FOUND again within a second, as over HTTP; a replaced one is read and verified anew.
 */
export interface HotBundle {
  size: number;
  /** `length` bytes at `offset` (fewer at the end); from memory without a copy. */
  read(offset: number, length: number): Promise<Buffer>;
}

export interface HotBundlesOptions {
  path(sha256: string): string;
  clock: Clock;
  log: Logger;
  maxBytes?: number;
  maxOpen?: number;
  idleMs?: number;
}

export const HOT_BUNDLE_DEFAULTS = { maxBytes: 256 * 1024 * 1024, maxOpen: 64, idleMs: 30_000 };

interface Entry {
  loaded: Promise<Loaded>;
  /** When the file was last seen unchanged (clock ms). */
  validatedAt: number;
  /** Bytes held in memory once loaded (0 for a file-backed entry or a refusal). */
  bytes: number;
  lastUsed: number;
  timer: { cancel(): void } | null;
}

type Loaded =
  | { ok: true; bundle: HotBundle; identity: string; close(): Promise<void> }
  | { ok: false; error: EdgeFleetError };

const VALIDATE_MS = 1000;

const identityOf = (st: { ino: number; size: number; mtimeMs: number }) => `${st.ino}:${st.size}:${st.mtimeMs}`;

const HASH_PIECE = 1024 * 1024;

export function createHotBundles(opts: HotBundlesOptions) {
  const maxBytes = opts.maxBytes ?? HOT_BUNDLE_DEFAULTS.maxBytes;
  const maxOpen = opts.maxOpen ?? HOT_BUNDLE_DEFAULTS.maxOpen;
  const idleMs = opts.idleMs ?? HOT_BUNDLE_DEFAULTS.idleMs;
  const { clock, log } = opts;
  const entries = new Map<string, Entry>();
  let closed = false;

  const drop = (sha256: string) => {
    const e = entries.get(sha256);
    if (!e) return;
    entries.delete(sha256);
    e.timer?.cancel();
    void e.loaded.then((l) => (l.ok ? l.close() : undefined)).catch(() => undefined);
  };

  /**
   * Drops least recently used entries until `incoming` more bytes fit and, without `keep` (an entry
   * being loaded, already counted), there is room for one more entry.
   */
  const makeRoom = (incoming: number, keep?: string) => {
    const held = () => [...entries.values()].reduce((a, e) => a + e.bytes, 0);
    const fits = () => (keep ? entries.size <= maxOpen : entries.size < maxOpen) && held() + incoming <= maxBytes;
    const byAge = [...entries.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [sha] of byAge) {
      if (fits()) return;
      if (sha !== keep) drop(sha);
    }
  };

  async function load(sha256: string, entry: Entry): Promise<Loaded> {
    let fh: FileHandle;
    try {
      fh = await open(opts.path(sha256), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        return { ok: false, error: new EdgeFleetError("NOT_FOUND", `bundle ${sha256} not found`) };
      }
      throw err;
    }
    try {
      const st = await fh.stat();
      const { size } = st;
      const identity = identityOf(st);
      const hash = createHash("sha256");
      if (size <= maxBytes / 2) {
        const buf = Buffer.allocUnsafe(size);
        let at = 0;
        // Piece by piece, hashing as it goes: one `update` over a 100 MB buffer would hold the
        // server's event loop for a quarter of a second.
        while (at < size) {
          const { bytesRead } = await fh.read(buf, at, Math.min(HASH_PIECE, size - at), at);
          if (bytesRead === 0) break;
          hash.update(buf.subarray(at, at + bytesRead));
          at += bytesRead;
        }
        await fh.close();
        const whole = buf.subarray(0, at);
        if (at !== size || hash.digest("hex") !== sha256) return refuse(sha256, size);
        makeRoom(size, sha256);
        entry.bytes = size;
        return {
          ok: true,
          identity,
          bundle: { size, read: async (offset, length) => whole.subarray(offset, Math.min(size, offset + length)) },
          close: async () => undefined,
        };
      }
      const piece = Buffer.allocUnsafe(HASH_PIECE);
      for (let at = 0; at < size; ) {
        const { bytesRead } = await fh.read(piece, 0, Math.min(HASH_PIECE, size - at), at);
        if (bytesRead === 0) {
          await fh.close();
          return refuse(sha256, at);
        }
        hash.update(piece.subarray(0, bytesRead));
        at += bytesRead;
      }
      if (hash.digest("hex") !== sha256) {
        await fh.close();
        return refuse(sha256, size);
      }
      makeRoom(0, sha256);
      // Dropped while a read is under way: the file closes when the last read ends.
      let reading = 0;
      let closing = false;
      return {
        ok: true,
        identity,
        bundle: {
          size,
          async read(offset, length) {
            const n = Math.max(0, Math.min(length, size - offset));
            const buf = Buffer.allocUnsafe(n);
            reading += 1;
            try {
              const { bytesRead } = await fh.read(buf, 0, n, offset);
              return buf.subarray(0, bytesRead);
            } finally {
              reading -= 1;
              if (closing && reading === 0) await fh.close().catch(() => undefined);
            }
          },
        },
        close: async () => {
          closing = true;
          if (reading === 0) await fh.close();
        },
      };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  function refuse(sha256: string, size: number): Loaded {
    log.error({ sha256, size }, "stored bundle does not match its SHA-256; not served");
    return {
      ok: false,
      error: new EdgeFleetError("BUNDLE_HASH_MISMATCH", `the server's copy of bundle ${sha256} is damaged`),
    };
  }

  /** Still the file that was verified? Missing: NOT_FOUND; replaced: drop it so the caller loads it anew. */
  async function stillValid(sha256: string, e: Entry): Promise<boolean> {
    const now = clock.now();
    if (now - e.validatedAt < VALIDATE_MS) return true;
    const loaded = await e.loaded;
    if (!loaded.ok) return true; // a refusal stands for idleMs
    const current = await stat(opts.path(sha256)).then(identityOf, (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return null;
      throw err;
    });
    if (current === loaded.identity) {
      e.validatedAt = now;
      return true;
    }
    if (entries.get(sha256) === e) drop(sha256);
    if (current === null) throw new EdgeFleetError("NOT_FOUND", `bundle ${sha256} not found`);
    return false;
  }

  /** The verified bundle; NOT_FOUND or BUNDLE_HASH_MISMATCH as an EdgeFleetError. */
  async function get(sha256: string): Promise<HotBundle> {
    if (closed) throw new EdgeFleetError("NOT_FOUND", "chunk serving is closed");
    const held = entries.get(sha256);
    if (held && !(await stillValid(sha256, held))) return get(sha256);
    let entry = entries.get(sha256);
    if (!entry) {
      makeRoom(0);
      const now = clock.now();
      const e: Entry = {
        loaded: Promise.resolve() as never,
        validatedAt: now,
        bytes: 0,
        lastUsed: now,
        timer: null,
      };
      e.loaded = load(sha256, e);
      entry = e;
      entries.set(sha256, e);
      // A failed open (EMFILE, EIO) is not remembered: the next request tries again.
      e.loaded.catch(() => entries.get(sha256) === e && entries.delete(sha256));
    }
    const e = entry;
    e.lastUsed = clock.now();
    e.timer?.cancel();
    e.timer = clock.setTimeout(() => entries.get(sha256) === e && drop(sha256), idleMs);
    const loaded = await e.loaded;
    if (!loaded.ok) {
      // NOT_FOUND is not remembered: the bundle may be built in a moment.
      if (loaded.error.code === "NOT_FOUND" && entries.get(sha256) === e) drop(sha256);
      throw loaded.error;
    }
    return loaded.bundle;
  }

  return {
    get,
    /** Bytes of bundles held in memory now (for tests and metrics). */
    heldBytes(): number {
      return [...entries.values()].reduce((a, e) => a + e.bytes, 0);
    },
    async close(): Promise<void> {
      closed = true;
      for (const sha of [...entries.keys()]) drop(sha);
    },
  };
}
export type HotBundles = ReturnType<typeof createHotBundles>;
