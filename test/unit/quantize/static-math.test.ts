import { describe, expect, it } from "vitest";
import { foldBatchNorm } from "../../../fleet-server/quantize/static/bn-fold.js";
import {
  calibratedRange,
  emptyStats,
  entropyThreshold,
  observe,
  quantizeBias,
  u8Params,
} from "../../../fleet-server/quantize/static/calibration.js";

describe("static int8 calibration statistics", () => {
  it("MinMax keeps the exact extremes across batches and always contains 0", () => {
    const s = observe(observe(emptyStats(), [1, 2, 3]), [0.5, 7, 2]);
    expect(calibratedRange(s, "minmax")).toEqual({ lo: 0, hi: 7 });
    const neg = observe(emptyStats(), [-4, -1]);
    expect(calibratedRange(neg, "minmax")).toEqual({ lo: -4, hi: 0 });
    expect(s.count).toBe(6);
  });

  it("percentile clips rare outliers that MinMax spends the whole range on", () => {
    const values = Array.from({ length: 10000 }, (_, i) => (i % 100) / 100); // [0, 0.99]
    values[5000] = 500; // one outlier
    values[6000] = -300;
    const s = observe(emptyStats(), values);
    expect(calibratedRange(s, "minmax")).toEqual({ lo: -300, hi: 500 });
    const p = calibratedRange(s, "percentile", 99.9);
    expect(p.hi).toBeCloseTo(0.99, 5);
    expect(p.lo).toBe(0);
  });

  it("entropy (KL) clips a far outlier but keeps the range of a spread-out distribution", () => {
    const uniform = Array.from({ length: 20000 }, (_, i) => (i % 1000) / 1000);
    expect(entropyThreshold(uniform)).toBeGreaterThan(0.9);
    const outliers = [...uniform, 100, -100, 100];
    const t = entropyThreshold(outliers);
    expect(t).toBeLessThanOrEqual(25); // at most `levels` of 512 bins over [0, 100]
    const s = observe(emptyStats(), outliers);
    expect(calibratedRange(s, "entropy")).toEqual({ lo: -t, hi: t });
  });

  it("ignores non-finite values and reports an empty tensor as [0, 0]", () => {
    const s = observe(emptyStats(), [Number.NaN, 2, Number.POSITIVE_INFINITY, -1]);
    expect(calibratedRange(s, "minmax")).toEqual({ lo: -1, hi: 2 });
    expect(calibratedRange(emptyStats(), "percentile")).toEqual({ lo: 0, hi: 0 });
  });

  it("samples a bounded, strided subset of each batch", () => {
    const s = observe(
      emptyStats(),
      new Float32Array(100000).map((_, i) => i),
      1000,
    );
    expect(s.sample.length).toBe(1000);
    expect(s.max).toBe(99999);
  });
});

describe("static int8 scale and zero point", () => {
  it("maps lo to 0, hi to 255 and 0.0 exactly onto the zero point", () => {
    const { scale, zeroPoint } = u8Params(-1, 3);
    expect(scale).toBeCloseTo(4 / 255, 7);
    expect(zeroPoint).toBe(64); // round(1 / (4/255)) = round(63.75)
    expect(Math.round(3 / scale) + zeroPoint).toBeLessThanOrEqual(255);
    expect(Math.round(-1 / scale) + zeroPoint).toBe(0);
    // A Relu output (lo = 0) gets zero point 0: negatives saturate, which is the fused Relu.
    expect(u8Params(0, 6).zeroPoint).toBe(0);
    expect(u8Params(0, 0)).toEqual({ scale: 1, zeroPoint: 0 });
  });

  it("quantizes a bias to int32 in units of input scale x per-channel weight scale", () => {
    const b = quantizeBias(Float32Array.from([1, -0.5, 0]), 0.1, Float32Array.from([0.01, 0.02, 0.5]));
    expect([...b]).toEqual([1000, -250, 0]);
  });
});

describe("BatchNormalization folding", () => {
  it("gives the same outputs as Conv then BN (1x1 conv, 2 output channels)", () => {
    const w = Float32Array.from([0.5, -1, 2, 0.25]); // [2 out, 2 in, 1, 1]
    const b = Float32Array.from([0.1, -0.2]);
    const bn = {
      gamma: Float32Array.from([1.5, 0.5]),
      beta: Float32Array.from([0.3, -0.1]),
      mean: Float32Array.from([0.2, -0.4]),
      variance: Float32Array.from([4, 0.25]),
      epsilon: 1e-5,
    };
    const folded = foldBatchNorm(w, b, bn);
    const x = [0.7, -1.3];
    for (let c = 0; c < 2; c++) {
      const conv = w[c * 2]! * x[0]! + w[c * 2 + 1]! * x[1]! + b[c]!;
      const ref = (bn.gamma[c]! * (conv - bn.mean[c]!)) / Math.sqrt(bn.variance[c]! + bn.epsilon) + bn.beta[c]!;
      const got = folded.weight[c * 2]! * x[0]! + folded.weight[c * 2 + 1]! * x[1]! + folded.bias[c]!;
      expect(got).toBeCloseTo(ref, 5);
    }
  });

  it("treats a missing conv bias as zero and refuses a weight that is not C channels", () => {
    const bn = {
      gamma: Float32Array.from([2]),
      beta: Float32Array.from([1]),
      mean: Float32Array.from([3]),
      variance: Float32Array.from([1]),
      epsilon: 0,
    };
    expect([...foldBatchNorm(Float32Array.from([1, 1]), null, bn).bias]).toEqual([-5]);
    expect(() =>
      foldBatchNorm(Float32Array.from([1, 1, 1]), null, { ...bn, gamma: Float32Array.from([1, 1]) }),
    ).toThrow(RangeError);
  });
});
