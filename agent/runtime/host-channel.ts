import type { Readable, Writable } from "node:stream";
import { EdgeFleetError } from "../../shared/errors.js";
import { DEFAULT_FRAME_LIMITS, type Frame, type FrameLimits, FrameReader, SMALL_FRAME_BYTES } from "./host-frames.js";

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
  opts: { limits?: FrameLimits; allocate?: (bytes: number) => Buffer } = {},
): FrameReader {
  const reader = new FrameReader(opts.limits ?? DEFAULT_FRAME_LIMITS, opts.allocate);
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

/** Small frames arrive as one buffer from `encodeFrame` (copied there: cheaper than a corked writev). */
export function writeFrame(stream: Writable, buffers: readonly Buffer[]): void {
  if (stream.destroyed || stream.writableEnded) return;
  let total = 0;
  for (const b of buffers) total += b.length;
  if (total <= SMALL_FRAME_BYTES) {
    stream.write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers as Buffer[], total));
    return;
  }
  stream.cork();
  for (const b of buffers) stream.write(b);
  stream.uncork();
}
