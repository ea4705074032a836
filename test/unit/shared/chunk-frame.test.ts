import { describe, expect, it } from "vitest";
import { CHUNK_QOS, decodeChunkFrame, encodeChunkFrame } from "../../../shared/chunk-frame.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { MAX_CHUNK } from "../../../shared/schemas/chunks.js";

/** The `chunks/res` codec (issue 17): every malformed frame is a CHUNK_INVALID with a reason, never a crash. */
const SHA = "b".repeat(64);
const header = (over: Record<string, unknown> = {}) => ({
  reqId: "r1",
  bundle: SHA,
  offset: 0,
  length: 4,
  size: 4,
  ...over,
});

function invalid(frame: Buffer): string {
  try {
    decodeChunkFrame(frame);
  } catch (err) {
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect((err as EdgeFleetError).code).toBe("CHUNK_INVALID");
    return (err as Error).message;
  }
  throw new Error("frame was accepted");
}

/** A frame with a hand-written header, bypassing the encoder. */
function rawFrame(head: string, bytes: Buffer = Buffer.alloc(0), declaredLen = Buffer.byteLength(head)): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(declaredLen, 0);
  return Buffer.concat([len, Buffer.from(head, "utf8"), bytes]);
}

describe("chunk frame codec", () => {
  it("round-trips a full-size chunk without copying its bytes out of the frame", () => {
    const bytes = Buffer.alloc(MAX_CHUNK, 7);
    const frame = encodeChunkFrame(header({ length: MAX_CHUNK, size: 10 * MAX_CHUNK }), bytes);
    const out = decodeChunkFrame(frame);
    expect(out.header.length).toBe(MAX_CHUNK);
    expect(out.bytes.equals(bytes)).toBe(true);
    expect(out.bytes.buffer).toBe(frame.buffer); // a view into the frame
  });

  it("round-trips an error frame", () => {
    const frame = encodeChunkFrame(
      header({ length: 0, error: { code: "BAD_REQUEST", message: "length: too big" } }),
      new Uint8Array(0),
    );
    expect(decodeChunkFrame(frame).header.error).toEqual({ code: "BAD_REQUEST", message: "length: too big" });
  });

  it("refuses a frame shorter than its length prefix", () => {
    expect(invalid(Buffer.from([0, 0]))).toMatch(/shorter than its length prefix/);
  });

  it("refuses a header length beyond the frame or over the 4 KiB cap", () => {
    expect(invalid(rawFrame("{}", Buffer.alloc(0), 100))).toMatch(/header length 100 out of range/);
    const huge = rawFrame("x".repeat(5000));
    expect(invalid(huge)).toMatch(/header length 5000 out of range/);
  });

  it("refuses a header that is not JSON or not a chunk header", () => {
    expect(invalid(rawFrame("{not json"))).toMatch(/not JSON/);
    expect(invalid(rawFrame(JSON.stringify(header({ offset: -1 })), Buffer.alloc(4)))).toMatch(/header invalid/);
    expect(invalid(rawFrame(JSON.stringify(header({ bundle: "xyz" })), Buffer.alloc(4)))).toMatch(/header invalid/);
  });

  it("refuses an oversize chunk (over MAX_CHUNK) even when the bytes match the header", () => {
    const big = MAX_CHUNK + 1;
    expect(invalid(rawFrame(JSON.stringify(header({ length: big, size: big })), Buffer.alloc(big)))).toMatch(
      /header invalid/,
    );
  });

  it("refuses bytes that disagree with the header's length, either way", () => {
    expect(invalid(encodeChunkFrame(header({ length: 4 }), Buffer.alloc(5)))).toMatch(/carries 5 bytes, header says 4/);
    expect(invalid(encodeChunkFrame(header({ length: 4 }), Buffer.alloc(3)))).toMatch(/carries 3 bytes, header says 4/);
  });

  it("chunks travel at QoS 0 (the pull protocol acknowledges them itself)", () => {
    expect(CHUNK_QOS).toBe(0);
  });
});
