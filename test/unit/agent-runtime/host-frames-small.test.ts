import { describe, expect, it } from "vitest";
import { decodeTensors, encodeFrame, FrameReader, PREFIX_BYTES } from "../../../agent/runtime/host-frames.js";
import { parseRunReply, type TensorEntry } from "../../../agent/runtime/host-headers.js";
import type { RawTensor } from "../../../shared/tensors.js";

/**
 * Issue 13, small-frame path: a frame that fits 64 KiB is one buffer (header and tensors copied in,
 * padding zeroed) whose header text is exactly what `JSON.stringify` of the header gives. Pure.
 */
const silero: Record<string, RawTensor> = {
  output: { type: "float32", dims: [1, 1], data: Float32Array.of(0.25) },
  // odd length first: the next tensor needs padding
  flags: { type: "bool", dims: [3], data: Uint8Array.of(1, 0, 1) },
  stateN: { type: "float32", dims: [2, 1, 128], data: Float32Array.from({ length: 256 }, (_, i) => i / 7) },
  'é "q"': { type: "int64", dims: [], data: BigInt64Array.of(16000n) },
};

describe("small frames", () => {
  const header = { id: 9, ok: true, computeMs: 0.3, timing: { received: 1, ortStart: 2, ortEnd: 3, replying: 4 } };

  it("come back as one buffer, padding zeroed, header text as JSON.stringify writes it", () => {
    const parts = encodeFrame(header, silero);
    expect(parts).toHaveLength(1);
    const frame = parts[0]!;
    const jsonBytes = frame.readUInt32LE(4);
    const text = frame.toString("utf8", PREFIX_BYTES, PREFIX_BYTES + jsonBytes);
    const parsed = JSON.parse(text) as { tensors: TensorEntry[] };
    expect(text).toBe(JSON.stringify({ ...header, tensors: parsed.tensors }));
    const payload = frame.subarray(PREFIX_BYTES + jsonBytes);
    // bytes 4..7 after `output` (4 bytes) and 11..15 after `flags` (3 bytes) are padding
    const flags = parsed.tensors[1]!;
    const state = parsed.tensors[2]!;
    expect([...payload.subarray(flags.offset + flags.byteLength, state.offset)]).toEqual([0, 0, 0, 0, 0]);
    const [f] = new FrameReader().push(frame);
    const decoded = decodeTensors(parseRunReply(f!.header).tensors, f!.payload);
    for (const [name, t] of Object.entries(silero)) {
      expect(Array.from(decoded[name]!.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
      expect(decoded[name]!.dims).toEqual(t.dims);
    }
  });

  it("an empty header and no tensors still make a valid frame; a big one stays a list of parts", () => {
    const [only] = encodeFrame({});
    expect(only!.toString("utf8", PREFIX_BYTES)).toBe('{"tensors":[]}');
    const big = encodeFrame({ id: 1 }, { x: { type: "float32", dims: [20000], data: new Float32Array(20000) } });
    expect(big.length).toBeGreaterThan(1);
  });
});
