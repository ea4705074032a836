import type { Readable, Writable } from "node:stream";
import { EdgeFleetError } from "../../shared/errors.js";
import {
  DEFAULT_FRAME_LIMITS,
  type Frame,
  type FrameLimits,
  FrameReader,
  SIDE_FRAME_MAGIC,
  SMALL_FRAME_BYTES,
} from "./host-frames.js";
import { SIDE_PAYLOAD_MIN_BYTES, type SidePayloads } from "./host-side-payloads.js";

/**
 * A one-buffer pool for a receiver that processes one payload at a time (the model host): `take` hands
 * out the spare buffer when it is big enough, `give` returns a payload once nothing uses it. Buffers
 * over `maxKeepBytes` are not kept, so an odd huge request does not pin its memory for ever.
 */
export function createPayloadPool(maxKeepBytes = 64 * 1024 * 1024) {
  let spare: Buffer | null = null;
  return {
    take(bytes: number): Buffer {
      if (spare && spare.length >= bytes) {
        const b = spare.subarray(0, bytes);
        spare = null;
        return b;
      }
      return Buffer.allocUnsafeSlow(bytes);
    },
    /** `payload` must come from `take` (its own ArrayBuffer, never a slice of Node's shared pool). */
    give(payload: Buffer): void {
      if (payload.length === 0 || payload.byteOffset !== 0) return;
      const whole = Buffer.from(payload.buffer, 0, payload.buffer.byteLength);
      if (whole.length > maxKeepBytes || (spare && spare.length >= whole.length)) return;
      spare = whole;
    },
  };
}

/**
 * Stream side of the agent ↔ host bulk channel (host-frames.ts has the format), used by both ends.
 * Reading: every chunk goes through one FrameReader; complete frames are handed on in order. A bad
 * frame stops reading and is reported once (the stream cannot be resynchronised: the owner ends the
 * channel's process). Writing: a frame's buffers are written corked, so they leave in one `writev`
 * without being concatenated.
 */
export function readFrames(
  stream: Readable,
  onFrame: (frame: Frame) => void,
  onBadFrame: (err: EdgeFleetError) => void,
  opts: { limits?: FrameLimits; allocate?: (bytes: number) => Buffer; side?: SidePayloads | null } = {},
): FrameReader {
  const reader = new FrameReader(opts.limits ?? DEFAULT_FRAME_LIMITS, opts.allocate, opts.side ?? null);
  const onData = (chunk: Buffer) => {
    let frames: Frame[];
    try {
      frames = reader.push(chunk);
    } catch (err) {
      stream.off("data", onData);
      stream.pause();
      onBadFrame(err instanceof EdgeFleetError ? err : new EdgeFleetError("INTERNAL", String(err)));
      return;
    }
    for (const f of frames) onFrame(f);
  };
  stream.on("data", onData);
  return reader;
}

/**
 * Small frames arrive as one buffer from `encodeFrame` (copied there: cheaper than a corked writev).
 * With `side`, a payload of at least SIDE_PAYLOAD_MIN_BYTES goes into a side payload file and only the
 * header and its number go on the stream (host-side-payloads.ts says why).
 */
export function writeFrame(stream: Writable, buffers: readonly Buffer[], side?: SidePayloads | null): void {
  if (stream.destroyed || stream.writableEnded) return;
  let total = 0;
  for (const b of buffers) total += b.length;
  if (total <= SMALL_FRAME_BYTES) {
    stream.write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers as Buffer[], total));
    return;
  }
  const head = buffers[0]!;
  if (side && total - head.length >= SIDE_PAYLOAD_MIN_BYTES) {
    const seq = side.put(buffers.slice(1), total - head.length);
    if (seq !== null) {
      // `head` is this frame's own prefix + header (encodeFrame allocates one per frame).
      const out = Buffer.allocUnsafe(head.length + 8);
      head.copy(out, 0);
      out.writeUInt32LE(SIDE_FRAME_MAGIC, 0);
      out.writeUInt32LE(seq % 2 ** 32, head.length);
      out.writeUInt32LE(Math.floor(seq / 2 ** 32), head.length + 4);
      stream.write(out);
      return;
    }
  }
  stream.cork();
  for (const b of buffers) stream.write(b);
  stream.uncork();
}
