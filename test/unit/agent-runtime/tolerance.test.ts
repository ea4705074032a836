import { describe, expect, it } from "vitest";
import { compareTensors } from "../../../agent/runtime/tolerance.js";
import type { JsonTensor } from "../../../shared/schemas/tensor.js";

const fp32 = (data: number[], shape = [data.length]): JsonTensor => ({ datatype: "FP32", shape, data });
const tol = { abs: 1e-3, rel: 1e-2 };

describe("compareTensors", () => {
  it("passes within abs + rel*|expected| and records the max abs error", () => {
    const r = compareTensors(fp32([1.0005, 100.5, 0]), fp32([1, 100, 0]), tol);
    expect(r.ok).toBe(true);
    expect(r.maxAbsError).toBeCloseTo(0.5, 10);
  });

  it("fails just outside the bound and names the element", () => {
    // Bound for expected 1 is 1e-3 + 1e-2 = 0.011.
    const r = compareTensors(fp32([1.012]), fp32([1]), tol);
    expect(r.ok).toBe(false);
    expect(r.reason).toContain("element 0");
    expect(r.maxAbsError).toBeCloseTo(0.012, 10);
  });

  it("uses |expected| for the relative part, not |actual|", () => {
    expect(compareTensors(fp32([0.02]), fp32([0]), tol).ok).toBe(false);
    expect(compareTensors(fp32([0]), fp32([0.0009]), tol).ok).toBe(true);
  });

  it("non-finite values fail, in actual or expected, even when both are the same", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const r = compareTensors(fp32([1, bad]), fp32([1, bad]), tol);
      expect(r.ok).toBe(false);
      expect(r.maxAbsError).toBe(Number.POSITIVE_INFINITY);
      expect(compareTensors(fp32([1, 2]), fp32([1, bad]), tol).ok).toBe(false);
    }
  });

  it("shape, datatype and length must match exactly", () => {
    expect(compareTensors(fp32([1, 2], [1, 2]), fp32([1, 2], [2, 1]), tol).ok).toBe(false);
    expect(compareTensors({ datatype: "FP64", shape: [1], data: [1] }, fp32([1]), tol).ok).toBe(false);
    expect(compareTensors(fp32([1, 2], [2]), { ...fp32([1], [2]) }, tol).ok).toBe(false);
  });

  it("compares integer and bool tensors numerically", () => {
    expect(
      compareTensors(
        { datatype: "BOOL", shape: [2], data: [true, false] },
        { datatype: "BOOL", shape: [2], data: [true, false] },
        tol,
      ).ok,
    ).toBe(true);
    expect(
      compareTensors(
        { datatype: "INT64", shape: [1], data: [3] },
        { datatype: "INT64", shape: [1], data: [4] },
        { abs: 0, rel: 0 },
      ).ok,
    ).toBe(false);
  });
});
