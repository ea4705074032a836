import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createPayloadPool, readFrames } from "../../../agent/runtime/host-channel.js";
import {
  decodeTensors,
  encodeFrame,
  FRAME_MAGIC,
  type Frame,
  FrameReader,
  PREFIX_BYTES,
} from "../../../agent/runtime/host-frames.js";
import { parseRunReply, parseRunRequest, type TensorEntry } from "../../../agent/runtime/host-headers.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import type { RawTensor } from "../../../shared/tensors.js";

/** The agent ↔ model host bulk channel's frame codec (issue 13, architecture.md §11). Pure. */

const concat = (bufs: Buffer[]) => Buffer.concat(bufs);
const entriesOf = (f: Frame) => (f.header as { tensors: TensorEntry[] }).tensors;

const mixed: Record<string, RawTensor> = {
  // Odd byte lengths first, so every later tensor needs padding to stay aligned.
  flags: { type: "bool", dims: [3], data: Uint8Array.from([1, 0, 1]) },
  f32: { type: "float32", dims: [2, 2], data: Float32Array.from([1.5, -2, Number.NaN, 1e30]) },
  u8: { type: "uint8", dims: [5], data: Uint8Array.from([0, 1, 2, 254, 255]) },
  i64: { type: "int64", dims: [2], data: BigInt64Array.from([-(2n ** 62n), 7n]) },
  half: { type: "float16", dims: [1], data: Uint16Array.from([0x3c00]) },
  f64: { type: "float64", dims: [1], data: Float64Array.from([Math.PI]) },
  words: { type: "string", dims: [3], data: ["", "héllo", "x".repeat(300)] },
  empty: { type: "float32", dims: [0, 4], data: new Float32Array(0) },
};

function expectSameTensors(got: Record<string, RawTensor>, want: Record<string, RawTensor>) {
  expect(Object.keys(got)).toEqual(Object.keys(want));
  for (const [name, t] of Object.entries(want)) {
    const g = got[name]!;
    expect(g.type).toBe(t.type);
    expect(g.dims).toEqual(t.dims);
    expect(Array.from(g.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
    expect(g.data.constructor).toBe(t.data.constructor);
  }
}

describe("host frames: encode and read back", () => {
  it("round-trips every tensor type, fed one byte at a time, as aligned views over one payload", () => {
    const bytes = concat(encodeFrame({ id: 7, outputs: ["f32"] }, mixed));
    const reader = new FrameReader();
    const frames: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...reader.push(bytes.subarray(i, i + 1)));
    expect(frames).toHaveLength(1);
    const f = frames[0]!;
    expect(f.header).toMatchObject({ id: 7, outputs: ["f32"] });
    const tensors = decodeTensors(entriesOf(f), f.payload);
    expectSameTensors(tensors, mixed);
    for (const t of Object.values(tensors)) {
      if (Array.isArray(t.data)) continue;
      // No copy: every numeric tensor is a view of the frame's payload.
      expect(t.data.buffer).toBe(f.payload.buffer);
      expect(t.data.byteOffset % t.data.BYTES_PER_ELEMENT).toBe(0);
    }
    expect(reader.midFrame).toBe(false);
  });

  it("reads several frames from one chunk and a frame split at every possible point", () => {
    const a = concat(encodeFrame({ id: 1 }, { f32: mixed.f32! }));
    const b = concat(encodeFrame({ id: 2, ok: false, error: { code: "INTERNAL", message: "x" } }));
    const both = concat([a, b, a]);
    expect(new FrameReader().push(both).map((f) => (f.header as { id: number }).id)).toEqual([1, 2, 1]);
    for (let cut = 1; cut < both.length; cut++) {
      const r = new FrameReader();
      const frames = [...r.push(both.subarray(0, cut)), ...r.push(both.subarray(cut))];
      expect(frames.map((f) => (f.header as { id: number }).id)).toEqual([1, 2, 1]);
    }
  });

  it("carries a 1×3×640×640 FP32 tensor in 64 KiB chunks, each byte copied once into one payload", () => {
    const data = Float32Array.from({ length: 3 * 640 * 640 }, (_, i) => (i % 255) - 127.5);
    const parts = encodeFrame({ id: 3 }, { x: { type: "float32", dims: [1, 3, 640, 640], data } });
    // The sender writes the tensor's own memory: no concatenated copy of it.
    expect(parts.some((p) => p.buffer === data.buffer)).toBe(true);
    const bytes = concat(parts);
    const reader = new FrameReader();
    const frames: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 65536) frames.push(...reader.push(bytes.subarray(at, at + 65536)));
    expect(frames).toHaveLength(1);
    const x = decodeTensors(entriesOf(frames[0]!), frames[0]!.payload).x!;
    expect(x.dims).toEqual([1, 3, 640, 640]);
    expect(Buffer.from((x.data as Float32Array).buffer).equals(Buffer.from(data.buffer))).toBe(true);
  });

  it("uses the receiver's allocator and refuses one that returns the wrong size", () => {
    const pool = createPayloadPool();
    const bytes = concat(encodeFrame({ id: 1 }, { f32: mixed.f32! }));
    const r1 = new FrameReader(undefined, pool.take);
    const f1 = r1.push(bytes)[0]!;
    pool.give(f1.payload);
    const f2 = new FrameReader(undefined, pool.take).push(bytes)[0]!;
    expect(f2.payload.buffer).toBe(f1.payload.buffer);
    // Only buffers that own their memory are recycled: never a slice of someone else's (Node's pool).
    const shared = Buffer.allocUnsafeSlow(64).subarray(8, 40);
    pool.give(shared);
    expect(pool.take(16).buffer).not.toBe(shared.buffer);
    const bad = new FrameReader(undefined, (n) => Buffer.allocUnsafeSlow(n + 1));
    expect(() => bad.push(bytes)).toThrow(/wrong size or alignment/);
  });
});

describe("host frames: bad input is a clear error, never a crash", () => {
  const prefix = (magic: number, headerBytes: number, payloadLo: number, payloadHi = 0) => {
    const b = Buffer.alloc(PREFIX_BYTES);
    b.writeUInt32LE(magic, 0);
    b.writeUInt32LE(headerBytes, 4);
    b.writeUInt32LE(payloadLo, 8);
    b.writeUInt32LE(payloadHi, 12);
    return b;
  };

  it.each([
    ["bad magic", prefix(0xdeadbeef, 2, 0), /bad frame magic 0xdeadbeef/],
    ["empty header", prefix(FRAME_MAGIC, 0, 0), /frame header of 0 bytes/],
    ["header over the limit", prefix(FRAME_MAGIC, 2 ** 21, 0), /frame header of 2097152 bytes \(limit 1048576\)/],
    ["payload over the limit", prefix(FRAME_MAGIC, 2, 0, 2), /frame payload of 8589934592 bytes/],
    ["header not JSON", concat([prefix(FRAME_MAGIC, 2, 0), Buffer.from("{x")]), /not valid JSON/],
  ])("%s", (_name, bytes, message) => {
    const reader = new FrameReader();
    let err: unknown;
    try {
      reader.push(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect((err as EdgeFleetError).message).toMatch(message);
    // The stream cannot be resynchronised: even a good frame is refused afterwards.
    expect(() => reader.push(concat(encodeFrame({ id: 1 })))).toThrow(message);
  });

  it.each<[string, TensorEntry[], number, RegExp]>([
    ["outside the payload", [{ name: "a", type: "float32", dims: [4], offset: 8, byteLength: 16 }], 16, /outside/],
    ["size not type × shape", [{ name: "a", type: "float32", dims: [3], offset: 0, byteLength: 16 }], 16, /16 bytes/],
    ["misaligned", [{ name: "a", type: "float32", dims: [2], offset: 2, byteLength: 8 }], 16, /not aligned/],
    [
      "listed twice",
      [
        { name: "a", type: "uint8", dims: [1], offset: 0, byteLength: 1 },
        { name: "a", type: "uint8", dims: [1], offset: 1, byteLength: 1 },
      ],
      16,
      /listed twice/,
    ],
    ["truncated strings", [{ name: "s", type: "string", dims: [1], offset: 0, byteLength: 6 }], 16, /truncated/],
  ])("decodeTensors: %s", (_name, entries, payloadBytes, message) => {
    const payload = Buffer.alloc(payloadBytes);
    payload.writeUInt32LE(100, 0);
    expect(() => decodeTensors(entries, payload)).toThrow(message);
  });

  it("a stream of garbage is reported once to the owner and reading stops", async () => {
    const stream = new PassThrough();
    const frames: Frame[] = [];
    const errors: EdgeFleetError[] = [];
    readFrames(
      stream,
      (f) => frames.push(f),
      (e) => errors.push(e),
    );
    stream.write(concat(encodeFrame({ id: 1 })));
    stream.write(Buffer.from("GET / HTTP/1.1\r\n\r\n and more garbage"));
    stream.write(concat(encodeFrame({ id: 2 })));
    await new Promise((r) => setImmediate(r));
    expect(frames.map((f) => (f.header as { id: number }).id)).toEqual([1]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/model host channel: bad frame magic/);
  });
});

describe("host frame headers: checked field by field", () => {
  const entry = { name: "x", type: "float32", dims: [1, 2], offset: 0, byteLength: 8 };
  const timing = { received: 1, ortStart: 2, ortEnd: 3, replying: 4 };

  it("accepts the headers the two ends write", () => {
    expect(parseRunRequest({ id: 3, outputs: ["y"], tensors: [entry] })).toEqual({
      id: 3,
      outputs: ["y"],
      tensors: [entry],
    });
    expect(parseRunReply({ id: 3, ok: true, computeMs: 0.2, timing, tensors: [entry] })).toMatchObject({
      ok: true,
      cpuMs: null,
    });
    // Issue 22: the host's CPU attributed to the run, optional on the wire.
    expect(parseRunReply({ id: 3, ok: true, computeMs: 0.2, cpuMs: 0.7, timing, tensors: [entry] })).toMatchObject({
      ok: true,
      cpuMs: 0.7,
    });
    expect(parseRunReply({ id: 3, ok: false, error: { code: "INFERENCE_FAILED", message: "m" }, tensors: [] })).toEqual(
      { id: 3, ok: false, error: { code: "INFERENCE_FAILED", message: "m" }, tensors: [] },
    );
  });

  it.each<[string, unknown, RegExp]>([
    ["not an object", [1, 2], /not an object/],
    ["no id", { tensors: [] }, /valid id/],
    ["id 0", { id: 0, tensors: [] }, /valid id/],
    ["tensors not an array", { id: 1, tensors: {} }, /"tensors" must be an array/],
    ["unknown type", { id: 1, tensors: [{ ...entry, type: "complex64" }] }, /type complex64 is unknown/],
    ["negative dim", { id: 1, tensors: [{ ...entry, dims: [1, -2] }] }, /dims must be/],
    ["fractional offset", { id: 1, tensors: [{ ...entry, offset: 0.5 }] }, /offset\/byteLength/],
    ["outputs not names", { id: 1, outputs: [1], tensors: [] }, /"outputs" must be an array of names/],
  ])("run request: %s", (_name, header, message) => {
    expect(() => parseRunRequest(header)).toThrow(message);
  });

  it.each<[string, unknown, RegExp]>([
    ["no ok", { id: 1, tensors: [] }, /without "ok"/],
    ["ok without timing", { id: 1, ok: true, computeMs: 1, tensors: [] }, /computeMs and timing/],
    [
      "timing not numbers",
      { id: 1, ok: true, computeMs: 1, timing: { ...timing, ortEnd: "3" }, tensors: [] },
      /ortEnd/,
    ],
    ["cpuMs negative", { id: 1, ok: true, computeMs: 1, cpuMs: -1, timing, tensors: [] }, /cpuMs/],
    ["cpuMs not a number", { id: 1, ok: true, computeMs: 1, cpuMs: "1", timing, tensors: [] }, /cpuMs/],
    ["error without code", { id: 1, ok: false, error: { message: "m" }, tensors: [] }, /code and message/],
    // The code is one of ours, not any string (it becomes an EdgeFleetError's stable code).
    [
      "error with a foreign code",
      { id: 1, ok: false, error: { code: "OOPS", message: "m" }, tensors: [] },
      /unknown code "OOPS"/,
    ],
  ])("run reply: %s", (_name, header, message) => {
    expect(() => parseRunReply(header)).toThrow(message);
  });
});
