import { describe, expect, it } from "vitest";
import { featureSamples, RollingHistogram } from "../../../agent/drift/rolling-window.js";
import {
  aggregateDrift,
  alertTransition,
  DEFAULT_DRIFT_THRESHOLDS,
} from "../../../fleet-server/telemetry/drift-alerts.js";
import { binIndex, ksBinned, mergeCounts, psi } from "../../../shared/drift/drift-stats.js";
import { BaselineSchema } from "../../../shared/schemas/baseline.js";
import type { DriftFeatureReport } from "../../../shared/schemas/telemetry.js";

const EDGES = [0, 1, 2, 3, 4];

describe("drift statistics (shared/drift)", () => {
  it("bins values with open tails and [lo, hi) bins", () => {
    expect([-5, 0, 0.99, 1, 2.5, 3, 4, 99].map((x) => binIndex(EDGES, x))).toEqual([0, 0, 0, 1, 2, 3, 3, 3]);
    expect(binIndex(EDGES, Number.NaN)).toBe(-1);
  });

  it("PSI is 0 for identical distributions, scale-free, and grows with the shift", () => {
    const base = [10, 20, 30, 40];
    expect(psi(base, base)).toBeCloseTo(0, 12);
    expect(
      psi(
        base,
        base.map((c) => c * 7),
      ),
    ).toBeCloseTo(0, 12);
    const small = psi(base, [12, 20, 29, 39]);
    const big = psi(base, [40, 30, 20, 10]);
    expect(small).toBeLessThan(0.1);
    expect(big).toBeGreaterThan(0.25);
    // Known value: Σ (a−e)·ln(a/e) for e=[.5,.5], a=[.9,.1] = 0.4·ln1.8 + (−0.4)·ln0.2
    expect(psi([1, 1], [9, 1])).toBeCloseTo(0.4 * Math.log(1.8) - 0.4 * Math.log(0.2), 10);
  });

  it("PSI smooths empty bins instead of returning Infinity", () => {
    expect(Number.isFinite(psi([1, 0], [0, 1]))).toBe(true);
  });

  it("binned KS is the max CDF gap, 0 for equal and 1 for disjoint histograms", () => {
    expect(ksBinned([1, 1, 1, 1], [2, 2, 2, 2])).toBeCloseTo(0, 12);
    expect(ksBinned([1, 0, 0, 0], [0, 0, 0, 1])).toBe(1);
    expect(ksBinned([1, 1, 0, 0], [0, 1, 1, 0])).toBeCloseTo(0.5, 12);
  });

  it("merges device windows bin by bin and refuses mismatched layouts", () => {
    expect(
      mergeCounts([
        [1, 2],
        [3, 4],
      ]),
    ).toEqual([4, 6]);
    expect(() => mergeCounts([[1, 2], [3]])).toThrow(RangeError);
  });
});

describe("rolling window and feature extraction (agent/drift)", () => {
  it("keeps exactly the last `capacity` samples", () => {
    const w = new RollingHistogram(EDGES, 3);
    for (const x of [0.5, 1.5, 2.5, 3.5, 3.6]) w.add(x);
    expect(w.n).toBe(3);
    expect(w.counts).toEqual([0, 0, 1, 2]);
    expect(w.fresh).toBe(5);
    w.markReported();
    expect(w.fresh).toBe(0);
  });

  it("reduces tensors per the baseline's `reduce`", () => {
    const t = { datatype: "FP32" as const, shape: [1, 4], data: [1, -3, 2, Number.NaN] };
    const f = (reduce: string) =>
      BaselineSchema.parse({
        version: 1,
        features: [{ name: "x", source: "input", tensor: "t", reduce, edges: [0, 1], counts: [1] }],
      }).features[0]!;
    expect(featureSamples(f("values"), t)).toEqual([1, -3, 2]);
    expect(featureSamples(f("mean"), t)).toEqual([0]);
    expect(featureSamples(f("max"), t)).toEqual([2]);
    expect(featureSamples(f("argmax"), t)).toEqual([2]);
    expect(featureSamples(f("rms"), t)[0]).toBeCloseTo(Math.sqrt(14 / 3), 10);
    expect(featureSamples(f("values"), undefined)).toEqual([]);
  });

  it("baseline schema rejects bins that do not match edges and non-increasing edges", () => {
    const base = { name: "x", source: "input", tensor: "t" };
    expect(
      BaselineSchema.safeParse({ version: 1, features: [{ ...base, edges: [0, 1, 2], counts: [1] }] }).success,
    ).toBe(false);
    expect(
      BaselineSchema.safeParse({ version: 1, features: [{ ...base, edges: [0, 2, 1], counts: [1, 1] }] }).success,
    ).toBe(false);
    expect(BaselineSchema.safeParse({ version: 1, features: [{ ...base, edges: [0, 1], counts: [0] }] }).success).toBe(
      false,
    );
    expect(
      BaselineSchema.safeParse({ version: 1, features: [{ ...base, edges: [0, 1, 2], counts: [1, 3] }] }).success,
    ).toBe(true);
  });
});

const report = (counts: number[], over: Partial<DriftFeatureReport> = {}): DriftFeatureReport => ({
  name: "audio",
  source: "input",
  kind: "continuous",
  n: counts.reduce((a, b) => a + b, 0),
  counts,
  expected: [0.25, 0.25, 0.25, 0.25],
  psi: psi([1, 1, 1, 1], counts),
  ks: ksBinned([1, 1, 1, 1], counts),
  ...over,
});

describe("fleet drift aggregation and alert hysteresis (fleet-server/telemetry)", () => {
  it("merges devices' windows and keeps data and prediction drift apart", () => {
    const agg = aggregateDrift([
      [report([100, 100, 100, 100]), report([50, 50, 50, 50], { name: "speech", source: "output" })],
      [report([100, 100, 100, 100])],
    ]);
    expect(agg.map((f) => [f.name, f.drift, f.devices, f.n])).toEqual([
      ["audio", "data", 2, 800],
      ["speech", "prediction", 1, 200],
    ]);
    expect(agg[0]!.psi).toBeCloseTo(0, 10);
  });

  it("one device with a shifted window moves the fleet PSI and shows in maxDevicePsi", () => {
    const agg = aggregateDrift([[report([100, 100, 100, 100])], [report([0, 0, 0, 400])]]);
    expect(agg[0]!.maxDevicePsi).toBeGreaterThan(1);
    expect(agg[0]!.psi).toBeGreaterThan(DEFAULT_DRIFT_THRESHOLDS.psi);
  });

  it("raises once, stays quiet while above the clear level, clears below it", () => {
    const t = DEFAULT_DRIFT_THRESHOLDS;
    const f = (psiValue: number, n = 1000) => ({
      name: "audio",
      drift: "data" as const,
      kind: "categorical" as const,
      devices: 1,
      n,
      psi: psiValue,
      ks: null,
      meanDevicePsi: psiValue,
      maxDevicePsi: psiValue,
    });
    const seq = [0.05, 0.25, 0.3, 0.19, 0.17, 0.15, 0.25];
    let alerting = false;
    const events: string[] = [];
    for (const v of seq) {
      const tr = alertTransition(alerting, f(v), t);
      if (tr) {
        events.push(`${tr.type}@${v}`);
        alerting = tr.type === "drift.alert.raised";
      }
    }
    // 0.19 and 0.17 are below the threshold but above 0.8 × 0.2 = 0.16: no flapping.
    expect(events).toEqual(["drift.alert.raised@0.25", "drift.alert.cleared@0.15", "drift.alert.raised@0.25"]);
    expect(alertTransition(false, f(5, 10), t)).toBeNull(); // too few samples
  });

  it("KS alone can raise an alert on a continuous feature", () => {
    const tr = alertTransition(
      false,
      { ...aggregateDrift([[report([100, 100, 100, 100])]])[0]!, ks: 0.5, psi: 0.01 },
      DEFAULT_DRIFT_THRESHOLDS,
    );
    expect(tr).toMatchObject({ type: "drift.alert.raised", metric: "ks" });
  });
});
