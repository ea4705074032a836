import { brotliCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { EdgeFleetError } from "../../../shared/errors.js";
import { decodeSamples, encodeSamples, sampleBudgetBytes } from "../../../shared/samples-codec.js";
import type { Datatype } from "../../../shared/schemas/common.js";
import type { JsonTensor, SamplesFile } from "../../../shared/schemas/tensor.js";
import { seededRandom } from "../../../shared/seeded-random.js";

/** One value table per datatype, with each type's edge values (what a sample must carry exactly). */
const VALUES: Record<Datatype, (number | boolean | string)[]> = {
  BOOL: [true, false, true, true],
  UINT8: [0, 1, 200, 255],
  INT8: [-128, -1, 0, 127],
  UINT16: [0, 1, 40_000, 65_535],
  INT16: [-32_768, -1, 0, 32_767],
  FP16: [0, -2, 0.5, 65_504],
  UINT32: [0, 1, 3_000_000_000, 4_294_967_295],
  INT32: [-2_147_483_648, -1, 0, 2_147_483_647],
  FP32: [0, -1.5, 3.25, Math.fround(1e-20)],
  UINT64: [0, 1, 2 ** 40, 2 ** 53 - 1],
  INT64: [-(2 ** 53) + 1, -1, 0, 2 ** 53 - 1],
  FP64: [0, Math.PI, -1e300, 5e-324],
  BYTES: ["a", "", "héllo", "x y"],
};

const tensor = (datatype: Datatype, data = VALUES[datatype]): JsonTensor => ({ datatype, shape: [2, 2], data });
const file = (...samples: SamplesFile["samples"]): SamplesFile => ({ samples });
const noBlob = () => Promise.reject(new Error("blob must not be read"));

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeFleetError);
  return (err as EdgeFleetError).code;
}

describe("samples codec (lean bundles)", () => {
  it.each(Object.keys(VALUES) as Datatype[])("%s round-trips exactly", async (dt) => {
    const input = file({
      name: dt,
      inputs: { x: tensor(dt) },
      outputs: { y: tensor(dt) },
      tolerance: { abs: 0, rel: 0 },
    });
    const { index, blob } = encodeSamples(input, 1 << 20);
    const back = await decodeSamples(JSON.stringify(index), async () => blob);
    expect(back).toEqual(input);
  });

  it("reads the inline form without touching samples.bin", async () => {
    const inline = file({
      inputs: { x: tensor("FP32") },
      outputs: { y: tensor("FP32") },
      tolerance: { abs: 1, rel: 0 },
    });
    expect(await decodeSamples(JSON.stringify(inline), noBlob)).toEqual(inline);
  });

  it("an image-like sample is a fraction of its JSON text, and the same samples give the same bytes", () => {
    const rand = seededRandom(7);
    const data = Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.fround(Math.sin(i / 50) + rand() * 0.01));
    const s = file({
      inputs: { x: { datatype: "FP32", shape: [1, 3, 64, 64], data } },
      outputs: { y: { datatype: "FP32", shape: [1, 3, 64, 64], data } },
      tolerance: { abs: 1e-4, rel: 1e-3 },
    });
    const a = encodeSamples(s, 1 << 20);
    const b = encodeSamples(s, 1 << 20);
    expect(a.blob.equals(b.blob)).toBe(true);
    expect(JSON.stringify(a.index)).toBe(JSON.stringify(b.index));
    const raw = 2 * data.length * 4;
    expect(a.blob.length).toBeLessThan(raw);
    expect(a.blob.length * 5).toBeLessThan(JSON.stringify(s).length);
  });

  it("keeps samples in order while the blob fits the cap, and always the first", async () => {
    const rand = seededRandom(1);
    const noisy = (): JsonTensor => ({
      datatype: "FP32",
      shape: [4096],
      data: Array.from({ length: 4096 }, () => Math.fround(rand())),
    });
    const many = file(
      ...[0, 1, 2, 3].map((i) => ({
        name: `s${i}`,
        inputs: { x: noisy() },
        outputs: { y: noisy() },
        tolerance: { abs: 1e-4, rel: 1e-3 },
      })),
    );
    const one = encodeSamples(many, 1); // below even one sample: the first stays
    expect(one.index.samples.map((s) => s.name)).toEqual(["s0"]);
    expect(one.omitted).toBe(3);
    const cap = encodeSamples(file(...many.samples.slice(0, 2)), 1 << 20).blob.length; // exactly two fit
    const some = encodeSamples(many, cap);
    expect(some.index.samples.map((s) => s.name)).toEqual(["s0", "s1"]);
    expect(some.omitted).toBe(2);
    expect(some.blob.length).toBe(cap);
    const back = await decodeSamples(JSON.stringify(some.index), async () => some.blob);
    expect(back.samples.map((s) => s.inputs.x!.data)).toEqual([0, 1].map((i) => many.samples[i]!.inputs.x!.data));
    expect(encodeSamples(many, 1 << 20).omitted).toBe(0);
  });

  it("budget: the larger of 1 MiB and 5 % of the model", () => {
    expect(sampleBudgetBytes(1000)).toBe(1024 * 1024);
    expect(sampleBudgetBytes(100 * 1024 * 1024)).toBe(5 * 1024 * 1024);
  });

  describe("refuses what does not decode, with BUNDLE_SAMPLES_INVALID", () => {
    const good = encodeSamples(
      file({ inputs: { x: tensor("FP32") }, outputs: { y: tensor("INT64") }, tolerance: { abs: 0, rel: 0 } }),
      1 << 20,
    );
    const idx = good.index;
    const cases: [string, string, () => Promise<Buffer>][] = [
      ["not JSON", "{", async () => good.blob],
      ["inline form with no samples", JSON.stringify({ samples: [] }), noBlob],
      ["unknown encoding", JSON.stringify({ ...idx, encoding: "gzip" }), async () => good.blob],
      ["negative offset", JSON.stringify(withX(idx, { offset: -1 })), async () => good.blob],
      ["BYTES given an offset", JSON.stringify(withX(idx, { datatype: "BYTES" })), async () => good.blob],
      ["slice past the end", JSON.stringify(withX(idx, { offset: good.index.rawBytes - 4 })), async () => good.blob],
      ["blob not brotli", JSON.stringify(idx), async () => Buffer.from("not brotli at all")],
      ["blob inflates past the declared size", JSON.stringify({ ...idx, rawBytes: 8 }), async () => good.blob],
      [
        "blob shorter than declared",
        JSON.stringify(idx),
        async () => brotliCompressSync(Buffer.alloc(idx.rawBytes - 8)),
      ],
      ["declared size over the limit", JSON.stringify({ ...idx, rawBytes: 2 ** 40 }), async () => good.blob],
      ["blob unreadable", JSON.stringify(idx), () => Promise.reject(new Error("ENOENT"))],
    ];
    it.each(cases)("%s", async (_what, json, blob) => {
      expect(await codeOf(decodeSamples(json, blob))).toBe("BUNDLE_SAMPLES_INVALID");
    });
  });
});

function withX(index: unknown, patch: Record<string, unknown>): unknown {
  const i = structuredClone(index) as { samples: { inputs: Record<string, Record<string, unknown>> }[] };
  Object.assign(i.samples[0]!.inputs.x!, patch);
  return i;
}
