import { describe, expect, it } from "vitest";
import { flattenData, quickInferRequest, V2InferRequestSchema } from "../../../agent/api/v2-body.js";
import type { EdgeFleetError } from "../../../shared/errors.js";
import type { JsonTensor } from "../../../shared/schemas/tensor.js";
import { jsonToRaw } from "../../../shared/tensors.js";

/**
 * Issue 13, JSON path: the hand-compiled request check must answer exactly what zod answers for the
 * bodies it accepts, and leave everything else (unknown keys, wrong types, limits) to zod.
 */
const input = { name: "x", shape: [1, 2], datatype: "FP32", data: [1, 2] };
const ACCEPTED: unknown[] = [
  { inputs: [input] },
  { id: "r1", parameters: { ab_key: "k" }, inputs: [input, { ...input, name: "y", parameters: {} }] },
  { inputs: [{ name: "b", shape: [2], datatype: "FP32", parameters: { binary_data_size: 8 } }] },
  { inputs: [input], outputs: [{ name: "o" }, { name: "p", parameters: { binary_data: true } }] },
  { inputs: [{ ...input, shape: [] }] },
  { id: "x".repeat(256), inputs: [input] },
];
const REFUSED_OR_STRIPPED: unknown[] = [
  null,
  [],
  "body",
  {},
  { inputs: [] },
  { inputs: Array.from({ length: 65 }, (_, i) => ({ ...input, name: `i${i}` })) },
  { inputs: [input], extra: 1 },
  { inputs: [{ ...input, extra: 1 }] },
  { inputs: [{ ...input, name: "" }] },
  { inputs: [{ ...input, shape: [1, -1] }] },
  { inputs: [{ ...input, shape: [1.5] }] },
  { inputs: [{ ...input, shape: "1,2" }] },
  { inputs: [{ ...input, datatype: "FLOAT" }] },
  { inputs: [{ ...input, parameters: [] }] },
  { inputs: [{ ...input, parameters: null }] },
  { id: 7, inputs: [input] },
  { id: "x".repeat(257), inputs: [input] },
  { parameters: "p", inputs: [input] },
  { inputs: [input], outputs: {} },
  { inputs: [input], outputs: [{ name: "" }] },
  { inputs: [input], outputs: [{ name: "o", extra: true }] },
  { inputs: [input], outputs: [{ name: "o", parameters: 3 }] },
];

describe("quickInferRequest", () => {
  it("returns what zod returns for conforming bodies", () => {
    for (const body of ACCEPTED) {
      const zod = V2InferRequestSchema.safeParse(body);
      expect(zod.success).toBe(true);
      expect(quickInferRequest(body)).toEqual(zod.success ? zod.data : undefined);
    }
  });

  it("leaves every other body to zod (which refuses it or strips unknown keys)", () => {
    for (const body of REFUSED_OR_STRIPPED) expect(quickInferRequest(body)).toBeNull();
  });
});

describe("flattenData fast path", () => {
  it("hands a flat numeric array on as it is, and still copies anything nested or mixed", () => {
    const flat = [1, 2.5, -3];
    expect(flattenData(flat, "x")).toBe(flat);
    const mixed = [1, true, 2];
    expect(flattenData(mixed, "x")).not.toBe(mixed);
    expect(flattenData(mixed, "x")).toEqual([1, true, 2]);
  });
});

describe("jsonToRaw (one pass, no intermediate array)", () => {
  const t = (datatype: JsonTensor["datatype"], data: JsonTensor["data"]): JsonTensor => ({
    datatype,
    shape: [data.length],
    data,
  });

  it("converts exactly as TypedArray.from did, booleans as 1/0", () => {
    const values = [0, 1, -1, 0.1, 1e-40, 3.4e39, -0, 255.5, 65536, 2 ** 31, true, false];
    const nums = values.map((v) => (typeof v === "boolean" ? (v ? 1 : 0) : v));
    expect(jsonToRaw("a", t("FP32", values)).data).toEqual(Float32Array.from(nums));
    expect(jsonToRaw("a", t("FP64", values)).data).toEqual(Float64Array.from(nums));
    const ints = [0, 1, -1, 255, 256, -129, 70000, 2 ** 40, true];
    const intNums = ints.map((v) => (v === true ? 1 : (v as number)));
    expect(jsonToRaw("a", t("UINT8", ints)).data).toEqual(Uint8Array.from(intNums));
    expect(jsonToRaw("a", t("INT8", ints)).data).toEqual(Int8Array.from(intNums));
    expect(jsonToRaw("a", t("INT16", ints)).data).toEqual(Int16Array.from(intNums));
    expect(jsonToRaw("a", t("UINT32", ints)).data).toEqual(Uint32Array.from(intNums));
    expect(jsonToRaw("a", t("INT64", ints)).data).toEqual(BigInt64Array.from(intNums.map(BigInt)));
    expect(jsonToRaw("a", t("UINT64", ints)).data).toEqual(BigUint64Array.from(intNums.map(BigInt)));
    expect(jsonToRaw("a", t("BOOL", [true, false, 1, 0])).data).toEqual(Uint8Array.of(1, 0, 1, 0));
    // 1.0 → 0x3c00, -2 → 0xc000, 65504 (max half) → 0x7bff
    expect(jsonToRaw("a", t("FP16", [1, -2, 65504])).data).toEqual(Uint16Array.of(0x3c00, 0xc000, 0x7bff));
  });

  it("refuses non-numbers and non-integers with INVALID_TENSOR naming the element", () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as EdgeFleetError;
      }
      return null;
    };
    expect(err(() => jsonToRaw("a", t("FP32", [1, "2"])))?.message).toMatch(/element 1 must be a number/);
    expect(err(() => jsonToRaw("a", t("INT32", [1, 1.5])))?.message).toMatch(/element 1 must be an integer/);
    expect(err(() => jsonToRaw("a", t("INT64", [0.5])))?.code).toBe("INVALID_TENSOR");
  });
});
