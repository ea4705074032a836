import { describe, expect, it } from "vitest";
import { AccuracyPolicySchema, compareOutputs } from "../../../fleet-server/quantize/compare.js";
import type { JsonTensor } from "../../../shared/schemas/tensor.js";

const t = (shape: number[], data: number[]): JsonTensor => ({ datatype: "FP32", shape, data });
const policy = AccuracyPolicySchema.parse({});

describe("int8 vs fp32 comparison under the accuracy policy", () => {
  it("passes small errors and reports max abs / relative error per output", () => {
    const r = compareOutputs([{ y: t([1, 3], [1, 2, 4]) }], [{ y: t([1, 3], [1.01, 2, 3.9]) }], policy);
    expect(r.failures).toEqual([]);
    expect(r.outputs[0]!.maxAbsError).toBeCloseTo(0.1, 5);
    expect(r.outputs[0]!.maxRelError).toBeCloseTo(0.025, 5);
    expect(r.top1Agreement).toBe(1);
  });

  it("fails an output over both the absolute and the relative bound", () => {
    const r = compareOutputs([{ y: t([1, 1], [1]) }], [{ y: t([1, 1], [1.5]) }], policy);
    expect(r.outputs[0]!.pass).toBe(false);
    expect(r.failures[0]).toContain("output y: max abs error 0.5");
  });

  it("counts top-1 agreement over classifier rows and applies the minimum", () => {
    const ref = [{ p: t([2, 2], [0.6, 0.4, 0.2, 0.8]) }, { p: t([1, 2], [0.51, 0.49]) }];
    const cand = [{ p: t([2, 2], [0.6, 0.4, 0.2, 0.8]) }, { p: t([1, 2], [0.49, 0.51]) }];
    const r = compareOutputs(ref, cand, policy);
    expect(r.top1Agreement).toBeCloseTo(2 / 3, 6);
    expect(r.failures.some((f) => f.startsWith("top-1 agreement 0.667 < 1"))).toBe(true);
    expect(compareOutputs(ref, cand, AccuracyPolicySchema.parse({ minTop1Agreement: 0.5 })).failures).toEqual([]);
  });

  it("flags non-finite values, exact-match integer outputs, and honours per-output overrides", () => {
    const r = compareOutputs(
      [{ y: t([2], [1, 2]), idx: { datatype: "INT64", shape: [1], data: [3] } }],
      [{ y: t([2], [1, Number.NaN]), idx: { datatype: "INT64", shape: [1], data: [4] } }],
      policy,
    );
    expect(r.failures).toHaveLength(2);
    const ignored = compareOutputs(
      [{ state: t([2], [1, 1]) }],
      [{ state: t([2], [2, 1]) }],
      AccuracyPolicySchema.parse({ outputs: { state: { ignore: true } } }),
    );
    expect(ignored.failures).toEqual([]);
    expect(ignored.outputs[0]).toMatchObject({ ignored: true, maxAbsError: 1 });
  });

  it("refuses unknown policy fields", () => {
    expect(AccuracyPolicySchema.safeParse({ maxAbsErr: 1 }).success).toBe(false);
  });
});
