import { describe, expect, it } from "vitest";
import { decodeChunkFrame, encodeChunkFrame } from "../../../shared/chunk-frame.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { BundlePathSchema } from "../../../shared/schemas/manifest.js";
import { createTopics } from "../../../shared/topics.js";

const SHA = "a".repeat(64);

describe("topics", () => {
  const t = createTopics();
  it("builds and parses device topics", () => {
    expect(t.device("pi-01", "chunks/req")).toBe("fleet/v1/d/pi-01/chunks/req");
    expect(t.parse("fleet/v1/d/pi-01/chunks/req")).toEqual({ deviceId: "pi-01", kind: "chunks/req" });
    expect(t.parse("fleet/v1/d/pi-01/other")).toBeNull();
    expect(t.parse("other/v1/d/pi-01/events")).toBeNull();
  });
  it("refuses device ids with MQTT wildcards or levels", () => {
    for (const bad of ["a+b", "a#", "a/b", ""]) expect(() => t.device(bad, "desired")).toThrow();
  });
});

describe("chunk frames", () => {
  it("round-trips header and bytes", () => {
    const bytes = Buffer.from([1, 2, 3, 4, 5]);
    const frame = encodeChunkFrame({ reqId: "r1", bundle: SHA, offset: 10, length: 5, size: 100 }, bytes);
    const { header, bytes: out } = decodeChunkFrame(frame);
    expect(header).toEqual({ reqId: "r1", bundle: SHA, offset: 10, length: 5, size: 100 });
    expect(Buffer.compare(out, bytes)).toBe(0);
  });
  it("rejects truncated frames with CHUNK_INVALID", () => {
    const frame = encodeChunkFrame({ reqId: "r1", bundle: SHA, offset: 0, length: 5, size: 5 }, Buffer.alloc(5));
    const err = (() => {
      try {
        decodeChunkFrame(frame.subarray(0, frame.length - 1));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect((err as EdgeFleetError).code).toBe("CHUNK_INVALID");
  });
});

describe("bundle paths", () => {
  it.each(["../x", "/etc/passwd", "a/../b", "a\\b", "a\0b", "./a", "a//b"])("rejects %j", (p) => {
    expect(BundlePathSchema.safeParse(p).success).toBe(false);
  });
  it("accepts plain names", () => {
    expect(BundlePathSchema.safeParse("model.onnx").success).toBe(true);
  });
});
