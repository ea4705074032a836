import { type FileHandle, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { decodeChunkFrame } from "../../shared/chunk-frame.js";
import { chunkTraceActive, traceChunk, traceNow } from "../../shared/chunk-trace.js";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import { MAX_CHUNK, MIN_CHUNK } from "../../shared/schemas/chunks.js";
import type { AgentStore } from "../store/agent-store.js";
import { classifyError } from "../store/storage-faults.js";
import { writeFully } from "../store/write-fully.js";
import type { ChunkChannel } from "../transport/chunk-channel.js";
import { createWindowController, DEFAULT_WINDOW_BOUNDS, type WindowBounds } from "./chunk-window.js";

export interface DownloadOptions {
  sha256: string;
  size: number;
  /** `{dataDir}/downloads` */
  dir: string;
  store: Pick<AgentStore, "downloadProgress" | "setDownloadProgress" | "clearDownload">;
  channel: ChunkChannel;
  clock: Clock;
  log: Logger;
  chunkSize?: number;
  /** A fixed number of requests in flight; absent: the adaptive window of chunk-window.ts within `windowBounds`. */
  window?: number;
  windowBounds?: WindowBounds;
  timeoutMs?: number;
  maxTries?: number;
  progressIntervalMs?: number;
  onProgress?: (bytes: number, total: number) => void;
}

export interface Download {
  /** Resolves with the path of the complete, verified bundle (`{dir}/{sha256}.bundle`). */
  done: Promise<string>;
  /** Stops requesting and closes the file; `done` rejects with DOWNLOAD_FAILED (aborted). */
  close(): Promise<void>;
}

export const DEFAULT_CHUNK = 128 * 1024;
/** The fixed window of earlier versions, still the HTTP anchor's in the bundle-delivery benchmark. */
export const DEFAULT_WINDOW = 4;

export function bundleFilePath(dir: string, sha256: string): string {
  return join(dir, `${sha256}.bundle`);
}

interface Pending {
  offset: number;
  length: number;
  tries: number;
  /** `performance.now()` when sent: the RTT sample of the window rule. */
  sentAt: number;
  timer: { cancel(): void };
}

/**
 * Pull download over chunk requests (architecture.md §4), resumable after a crash.
 *
 * Invariants:
 * - `persisted` (in SQLite) is a contiguous prefix of the .part file that was written *and*
 *   fsynced before it was recorded, so a restart can trust every byte below it.
 * - A request is only issued for an offset below `persisted + maxWindow * chunkSize` (`maxWindow`:
 *   the fixed window, or the adaptive window's upper bound). Hence after a SIGKILL at most one
 *   (largest) window of received-but-unpersisted bytes is requested again, and after a dropped link
 *   only the requests that were in flight (at most the window of the moment). The bound is the
 *   largest window, not the current one, so a persist round (an fdatasync) in progress does not hold
 *   the requests back while the window is small (issue 17: it was the main stall).
 * - Persisting is serialised (one fsync + one row update at a time).
 */
export function startDownload(opts: DownloadOptions): Download {
  const chunk = opts.chunkSize ?? DEFAULT_CHUNK;
  if (chunk < MIN_CHUNK || chunk > MAX_CHUNK)
    throw new EdgeFleetError("BAD_REQUEST", `chunk size ${chunk} out of range`);
  const fixedWindow = opts.window;
  if (fixedWindow !== undefined && !(Number.isInteger(fixedWindow) && fixedWindow >= 1)) {
    throw new EdgeFleetError("BAD_REQUEST", `window ${fixedWindow} must be a positive integer`);
  }
  const control = createWindowController(chunk, opts.windowBounds ?? DEFAULT_WINDOW_BOUNDS);
  const windowNow = () => fixedWindow ?? control.current();
  const aheadLimit = (fixedWindow ?? (opts.windowBounds ?? DEFAULT_WINDOW_BOUNDS).max) * chunk;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxTries = opts.maxTries ?? 5;
  const { sha256, size, clock, log, channel } = opts;
  const part = join(opts.dir, `${sha256}.part`);
  const final = bundleFilePath(opts.dir, sha256);

  let resolveDone!: (path: string) => void;
  let rejectDone!: (err: EdgeFleetError) => void;
  const done = new Promise<string>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => undefined); // callers observe it; never an unhandled rejection

  let fh: FileHandle | null = null;
  let persisted = 0;
  let memContiguous = 0;
  let nextOffset = 0;
  const received = new Map<number, number>();
  const inflight = new Map<string, Pending>();
  const retry: { offset: number; tries: number }[] = [];
  let seq = 0;
  let finished = false;
  let persisting: Promise<void> | null = null;
  let dirty = false;
  let lastProgressAt = Number.NEGATIVE_INFINITY;
  let stallSince = 0;
  const unsubscribe: (() => void)[] = [];

  const lengthAt = (offset: number) => Math.min(chunk, size - offset);

  const finish = async (err: EdgeFleetError | null, path?: string) => {
    if (finished) return;
    finished = true;
    for (const p of inflight.values()) p.timer.cancel();
    inflight.clear();
    for (const u of unsubscribe) u();
    await fh?.close().catch(() => undefined);
    fh = null;
    if (err) rejectDone(err);
    else resolveDone(path!);
  };

  const issue = (offset: number, tries: number) => {
    const reqId = `${sha256.slice(0, 12)}-${offset}-${++seq}`;
    const length = lengthAt(offset);
    const timer = clock.setTimeout(() => onTimeout(reqId), timeoutMs);
    inflight.set(reqId, { offset, length, tries, sentAt: performance.now(), timer });
    const t0 = chunkTraceActive() ? traceNow() : 0;
    channel.request({ bundle: sha256, offset, length, reqId });
    if (t0 > 0) traceChunk({ kind: "request", reqId, offset, t0, t: traceNow() });
  };

  const pump = () => {
    if (finished || !channel.connected() || fh === null) return;
    const window = windowNow();
    while (inflight.size < window) {
      const again = retry.shift();
      if (again) {
        issue(again.offset, again.tries);
        continue;
      }
      if (nextOffset >= size) break;
      if (nextOffset >= persisted + aheadLimit) {
        if (stallSince === 0 && chunkTraceActive()) stallSince = traceNow();
        break;
      }
      if (stallSince > 0) {
        traceChunk({ kind: "stall", t0: stallSince, t1: traceNow() });
        stallSince = 0;
      }
      issue(nextOffset, 0);
      nextOffset += lengthAt(nextOffset);
    }
  };

  const requeue = (p: Pending, penalty: number, why: string) => {
    const tries = p.tries + penalty;
    if (tries >= maxTries) {
      void finish(new EdgeFleetError("DOWNLOAD_FAILED", `chunk at ${p.offset} failed ${tries} times (${why})`));
      return;
    }
    retry.push({ offset: p.offset, tries });
    pump();
  };

  const onTimeout = (reqId: string) => {
    const p = inflight.get(reqId);
    if (!p || finished) return;
    inflight.delete(reqId);
    log.debug({ offset: p.offset, tries: p.tries + 1 }, "chunk request timed out");
    control.onTimeout(performance.now());
    requeue(p, 1, "timeout");
  };

  const onFrame = (frame: Buffer) => {
    if (finished) return;
    const tIn = chunkTraceActive() ? traceNow() : 0;
    let decoded: ReturnType<typeof decodeChunkFrame>;
    try {
      decoded = decodeChunkFrame(frame);
    } catch (err) {
      log.warn({ err: (err as Error).message }, "invalid chunk frame ignored");
      return;
    }
    const { header, bytes } = decoded;
    if (header.bundle !== sha256) return;
    const p = inflight.get(header.reqId);
    if (!p) return; // stale: timed out and re-requested, or from before a reconnect
    inflight.delete(header.reqId);
    p.timer.cancel();
    if (header.error) {
      if (FATAL_SERVER_ERRORS.has(header.error.code)) {
        const what = header.error.code === "NOT_FOUND" ? `server has no bundle ${sha256}` : header.error.message;
        void finish(new EdgeFleetError("DOWNLOAD_FAILED", what, { details: header.error }));
      } else requeue(p, 1, header.error.code);
      return;
    }
    if (header.size !== size) {
      // The server is not serving the signed bundle: nothing of what we hold of it can be trusted,
      // so the partial file and its progress go too (issue 7: "partial file removed").
      void finish(new EdgeFleetError("BUNDLE_SIZE_MISMATCH", `server says ${header.size} bytes, expected ${size}`))
        .then(async () => {
          await rm(part, { force: true });
          opts.store.clearDownload(sha256);
        })
        .catch((err) => log.warn({ err, part }, "could not remove the partial download"));
      return;
    }
    if (header.offset !== p.offset || header.length !== p.length) {
      log.warn(
        { asked: { offset: p.offset, length: p.length }, got: { offset: header.offset, length: header.length } },
        "chunk does not match its request; asked again",
      );
      requeue(p, 1, "chunk does not match its request");
      return;
    }
    const now = performance.now();
    const before = control.current();
    control.onReply(bytes.length, p.tries === 0 ? now - p.sentAt : null, now);
    if (tIn > 0 && control.current() !== before) {
      traceChunk({ kind: "window", t: traceNow(), ...control.state() });
    }
    void write(p.offset, bytes, header.reqId, tIn, tIn > 0 ? traceNow() : 0);
  };

  const write = async (offset: number, bytes: Buffer, reqId: string, tIn: number, tDecoded: number) => {
    try {
      const handle = fh;
      if (!handle) return;
      await writeFully(handle, bytes, offset);
      if (tIn > 0) traceChunk({ kind: "frame", reqId, offset, tIn, tDecoded, tWritten: traceNow() });
      received.set(offset, bytes.length);
      while (received.has(memContiguous)) {
        const len = received.get(memContiguous)!;
        received.delete(memContiguous);
        memContiguous += len;
      }
      schedulePersist();
      pump();
    } catch (err) {
      void finish(classifyError(err, "DOWNLOAD_FAILED", part));
    }
  };

  const schedulePersist = () => {
    if (persisting) {
      dirty = true;
      return;
    }
    // Handled here (issue 20 §2): a full disk failing the fsync, the progress row or the final
    // rename must end this download with its storage code, never escape as an unhandled rejection.
    persisting = persistLoop()
      .catch((err) => finish(classifyError(err, "DOWNLOAD_FAILED", part)))
      .finally(() => {
        persisting = null;
      });
  };

  const persistLoop = async () => {
    do {
      dirty = false;
      const target = memContiguous;
      if (target <= persisted || !fh) return;
      const t0 = performance.now();
      await fh.datasync(); // every byte below `target` was written before this call
      if (finished) return;
      const tSynced = performance.now();
      opts.store.setDownloadProgress(sha256, size, target);
      const tRecorded = performance.now();
      if (chunkTraceActive()) traceChunk({ kind: "persist", t0, tSynced, tRecorded, bytes: target - persisted });
      persisted = target;
      reportProgress(false);
      if (persisted >= size) {
        await complete();
        return;
      }
      pump();
    } while (dirty);
  };

  const reportProgress = (force: boolean) => {
    const now = clock.now();
    if (!force && now - lastProgressAt < (opts.progressIntervalMs ?? 1000)) return;
    lastProgressAt = now;
    opts.onProgress?.(persisted, size);
  };

  const complete = async () => {
    const t0 = traceNow();
    await fh?.close();
    fh = null;
    const actual = await sha256File(part);
    if (actual.size !== size || actual.sha256 !== sha256) {
      await rm(part, { force: true }).catch(() => undefined); // a read-only disk keeps it; GC or the next try removes it
      opts.store.clearDownload(sha256);
      const code = actual.size !== size ? "BUNDLE_SIZE_MISMATCH" : "BUNDLE_HASH_MISMATCH";
      await finish(new EdgeFleetError(code, `downloaded bundle has ${actual.size} bytes, SHA-256 ${actual.sha256}`));
      return;
    }
    await rename(part, final);
    await fsyncDir(opts.dir);
    opts.store.clearDownload(sha256);
    traceChunk({ kind: "verify", t0, t1: traceNow() });
    reportProgress(true);
    await finish(null, final);
  };

  const start = async () => {
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    if (await exists(final)) return finish(null, final); // verified before it was renamed
    let from = opts.store.downloadProgress(sha256) ?? 0;
    const partSize = (await exists(part)) ? (await stat(part)).size : -1;
    if (from > size || partSize < from) from = 0; // progress row without its bytes: start over
    fh = await open(part, partSize >= 0 ? "r+" : "w+", 0o600);
    persisted = memContiguous = nextOffset = from;
    if (from > 0) log.info({ sha256, from, size }, "resuming download");
    unsubscribe.push(channel.onFrame(onFrame));
    unsubscribe.push(
      channel.onConnectionChange((up) => {
        if (finished) return;
        if (!up) {
          // Paused: whatever was in flight is asked again after the reconnect, without penalty.
          for (const p of inflight.values()) {
            p.timer.cancel();
            retry.push({ offset: p.offset, tries: p.tries });
          }
          inflight.clear();
        } else pump();
      }),
    );
    if (from >= size) await complete();
    else pump();
  };
  start().catch((err) => finish(classifyError(err, "DOWNLOAD_FAILED", part)));

  return {
    done,
    async close() {
      await persisting;
      await finish(new EdgeFleetError("DOWNLOAD_FAILED", "download aborted", { details: { aborted: true } }));
    },
  };
}

/**
 * Server answers that asking again cannot change: the download fails at once, with the server's
 * reason (BUNDLE_HASH_MISMATCH: the server's own copy is damaged; the updater's retry comes later).
 */
const FATAL_SERVER_ERRORS = new Set(["NOT_FOUND", "BAD_REQUEST", "BUNDLE_HASH_MISMATCH"]);

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
