import type { JsonTensor } from "../../shared/schemas/tensor.js";

export interface Tolerance {
  abs: number;
  rel: number;
}

export interface Comparison {
  ok: boolean;
  /** Largest |actual - expected| over finite elements (Infinity when a value is non-finite). */
  maxAbsError: number;
  /** Why it failed, when it did. */
  reason?: string;
}

function asNumber(v: number | boolean | string): number {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  return Number.NaN;
}

/**
 * Element-wise `|a - b| <= abs + rel * |b|` (numpy `allclose` with b = expected).
 * Non-finite actual values always fail: a model emitting NaN/Inf is broken even if the golden output
 * was recorded with the same defect. Shape and datatype must match exactly. Pure.
 */
export function compareTensors(actual: JsonTensor, expected: JsonTensor, tol: Tolerance): Comparison {
  if (actual.datatype !== expected.datatype) {
    return {
      ok: false,
      maxAbsError: Number.POSITIVE_INFINITY,
      reason: `datatype ${actual.datatype} != ${expected.datatype}`,
    };
  }
  if (actual.shape.length !== expected.shape.length || actual.shape.some((d, i) => d !== expected.shape[i])) {
    return {
      ok: false,
      maxAbsError: Number.POSITIVE_INFINITY,
      reason: `shape [${actual.shape.join(",")}] != [${expected.shape.join(",")}]`,
    };
  }
  if (actual.data.length !== expected.data.length) {
    return { ok: false, maxAbsError: Number.POSITIVE_INFINITY, reason: "element count differs" };
  }
  if (actual.datatype === "BYTES") {
    const i = actual.data.findIndex((v, k) => v !== expected.data[k]);
    return i < 0
      ? { ok: true, maxAbsError: 0 }
      : { ok: false, maxAbsError: Number.POSITIVE_INFINITY, reason: `element ${i} differs` };
  }
  let maxAbsError = 0;
  let firstBad: string | undefined;
  for (let i = 0; i < actual.data.length; i++) {
    const a = asNumber(actual.data[i]!);
    const b = asNumber(expected.data[i]!);
    if (!Number.isFinite(a)) {
      return { ok: false, maxAbsError: Number.POSITIVE_INFINITY, reason: `element ${i} is non-finite (${a})` };
    }
    if (!Number.isFinite(b)) {
      return { ok: false, maxAbsError: Number.POSITIVE_INFINITY, reason: `expected element ${i} is non-finite (${b})` };
    }
    const err = Math.abs(a - b);
    if (err > maxAbsError) maxAbsError = err;
    if (firstBad === undefined && err > tol.abs + tol.rel * Math.abs(b)) {
      firstBad = `element ${i}: ${a} vs expected ${b} (|diff| ${err} > ${tol.abs} + ${tol.rel}*|expected|)`;
    }
  }
  return firstBad === undefined ? { ok: true, maxAbsError } : { ok: false, maxAbsError, reason: firstBad };
}
