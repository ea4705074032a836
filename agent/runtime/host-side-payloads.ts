import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * Side payloads of the agent ↔ model host bulk channel (issue 13; host-frames.ts has the frame format).
 *
 * Why: a stream socket between two processes moves a large tensor in socket-buffer-sized pieces
 * (~200 KB here), each a wake-up of the other process: 4.9 MB took ~20 ms on a quiet machine and
 * 45–80 ms on a busy one, against ~1 ms for a memcpy. A large payload therefore goes through a file
 * in a tmpfs directory private to the pair (/dev/shm, mode 0700): the sender writes it in one call,
 * the frame on the socket says only "payload is file N", the receiver reads it in one call and
 * removes it. Small frames stay on the socket (a file costs a few syscalls, the socket nothing).
 *
 * Invariants: each file is written completely before its frame is sent and read completely before
 * the receiver hands the frame on; a file exists only between those two moments, so the directory
 * holds at most the payloads in flight. Each side writes names only with its own prefix and reads
 * only the other's, in sequence order. A crash of either process can leave files: the agent removes
 * the directory when the host exits, and at start removes directories of agents that are gone.
 */
export const SIDE_PAYLOAD_MIN_BYTES = 1024 * 1024;

export interface SidePayloads {
  /** Writes `buffers` (`bytes` in all) as the next outgoing payload; returns its sequence number, or null when the file could not be written (the caller sends the payload on the stream instead). */
  put(buffers: readonly Buffer[], bytes: number): number | null;
  /** Reads incoming payload `seq` into `into` (exactly its size) and removes the file. Throws on any mismatch. */
  take(seq: number, into: Buffer): void;
}

const bad = (msg: string) => new EdgeFleetError("INTERNAL", `model host channel: ${msg}`);

/** `dir` is shared by the pair; `mine`/`theirs` are the name prefixes ("a" agent → host, "h" host → agent). */
export function sidePayloadsIn(dir: string, mine: "a" | "h"): SidePayloads {
  const theirs = mine === "a" ? "h" : "a";
  let nextOut = 1;
  let nextIn = 1;
  return {
    put(buffers, bytes) {
      const seq = nextOut;
      const path = join(dir, `${mine}${seq}`);
      let fd = -1;
      try {
        fd = openSync(path, "wx", 0o600);
        let written = 0;
        for (const b of buffers) {
          let at = 0;
          while (at < b.length) at += writeSync(fd, b, at, b.length - at, written + at);
          written += b.length;
        }
        if (written !== bytes) throw new Error(`wrote ${written} of ${bytes} bytes`);
        closeSync(fd);
      } catch {
        // Full or missing tmpfs: this payload goes on the stream; the channel itself is fine.
        if (fd >= 0) closeSync(fd);
        rmSync(path, { force: true });
        return null;
      }
      nextOut++;
      return seq;
    },
    take(seq, into) {
      if (seq !== nextIn) throw bad(`side payload ${seq} out of order (expected ${nextIn})`);
      nextIn++;
      const path = join(dir, `${theirs}${seq}`);
      let fd: number;
      try {
        fd = openSync(path, "r");
      } catch (err) {
        throw bad(`side payload ${seq} is missing (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      }
      try {
        let at = 0;
        while (at < into.length) {
          const n = readSync(fd, into, at, into.length - at, at);
          if (n === 0) throw bad(`side payload ${seq} has ${at} bytes, the frame announced ${into.length}`);
          at += n;
        }
        if (readSync(fd, Buffer.alloc(1), 0, 1, at) !== 0) throw bad(`side payload ${seq} is longer than announced`);
      } finally {
        closeSync(fd);
        unlinkSync(path);
      }
    },
  };
}

const PREFIX = "edgefleet-host-";
let swept = false;

/**
 * A new private directory for one host's side payloads, or null when there is no tmpfs to use (then
 * everything goes on the socket, as before). The first call also removes directories left by agents
 * that are no longer running.
 */
export function createSideDir(root = "/dev/shm"): string | null {
  try {
    if (!swept) {
      swept = true;
      for (const name of readdirSync(root)) {
        const pid = Number(/^edgefleet-host-(\d+)-/.exec(name)?.[1]);
        if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
        rmSync(join(root, name), { recursive: true, force: true });
      }
    }
    return mkdtempSync(join(root, `${PREFIX}${process.pid}-`));
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function removeSideDir(dir: string | null): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}
