import { describe, expect, it } from "vitest";
import { countNonFinite, restartDelayMs } from "../../../agent/runtime/host-health.js";
import { checkCompatibility, type DeviceFacts } from "../../../agent/trust/verify-desired.js";
import { type HealthSample, percentile, summarize } from "../../../agent/updater/health-summary.js";
import { judgeProbation, type ProbationStats, windowComplete } from "../../../agent/updater/verdicts.js";
import { createFakeClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { type HealthPolicy, HealthPolicySchema } from "../../../shared/schemas/desired-state.js";
import type { HealthSummary } from "../../../shared/schemas/device-state.js";
import { makeManifest } from "./helpers.js";

const SHA = "a".repeat(64);
const MB = 2 ** 20;
const policy = (over: Partial<HealthPolicy> = {}): HealthPolicy => HealthPolicySchema.parse(over);

/** `n` successful runs of `ms` each, at `at`. */
const runs = (n: number, ms: number, at: number, over: Partial<HealthSample> = {}): HealthSample[] =>
  Array.from({ length: n }, () => ({ at, ok: true, computeMs: ms, nonFinite: 0, probe: false, ...over }));

const summary = (samples: HealthSample[], over: Partial<HealthSummary> = {}): HealthSummary => ({
  ...summarize({ version: "2.0.0", sha256: SHA }, samples, { hostRestarts: 0, rssBytes: 80 * MB }),
  ...over,
});

const stats = (candidate: HealthSummary, startedAt = 0, over: Partial<ProbationStats> = {}): ProbationStats => ({
  startedAt,
  candidate,
  serving: true,
  memoryBudgetBytes: 512 * MB,
  ...over,
});

describe("judgeProbation (fake clock)", () => {
  const baseline = summary(runs(50, 2, 0), { version: "1.0.0" });

  it("stays pending until the duration has passed, then passes a healthy candidate", () => {
    const clock = createFakeClock(1_000);
    const p = policy({ probationSeconds: 10 });
    const start = clock.now();
    const healthy = summary(runs(40, 2.2, start));
    expect(judgeProbation(stats(healthy, start), p, baseline, clock.now())).toEqual({ verdict: "pending" });
    clock.advance(9_999);
    expect(judgeProbation(stats(healthy, start), p, baseline, clock.now())).toEqual({ verdict: "pending" });
    clock.advance(1);
    expect(judgeProbation(stats(healthy, start), p, baseline, clock.now())).toEqual({ verdict: "passed" });
  });

  it("with a request window, waits for both the duration and the request count", () => {
    const clock = createFakeClock(0);
    const p = policy({ probationSeconds: 1, probationRequests: 30 });
    clock.advance(5_000);
    expect(windowComplete(stats(summary(runs(29, 1, 0))), p, clock.now())).toBe(false);
    expect(judgeProbation(stats(summary(runs(29, 1, 0))), p, baseline, clock.now()).verdict).toBe("pending");
    expect(judgeProbation(stats(summary(runs(30, 1, 0))), p, baseline, clock.now()).verdict).toBe("passed");
    const onlyRequests = policy({ probationSeconds: 0, probationRequests: 3 });
    expect(judgeProbation(stats(summary(runs(3, 1, 0))), onlyRequests, baseline, 0).verdict).toBe("passed");
  });

  it("fails a slow candidate with LATENCY_REGRESSION: p95 > ratio x previous p95 (+ noise floor)", () => {
    const p = policy({ probationSeconds: 1, maxP95LatencyRatio: 2 });
    const slow = summary(runs(40, 6, 0));
    expect(judgeProbation(stats(slow), p, baseline, 1_000)).toMatchObject({
      verdict: "failed",
      code: "LATENCY_REGRESSION",
    });
    // 4.9 ms <= 2 x 2 ms + 1 ms floor: within the policy.
    expect(judgeProbation(stats(summary(runs(40, 4.9, 0))), p, baseline, 1_000).verdict).toBe("passed");
    // Without a baseline (first install) or with too few samples, latency is not judged.
    expect(judgeProbation(stats(slow), p, null, 1_000).verdict).toBe("passed");
    expect(judgeProbation(stats(summary(runs(5, 60, 0))), p, baseline, 1_000).verdict).toBe("passed");
  });

  it("p95 ignores a few outliers but not a slow tail", () => {
    const p = policy({ probationSeconds: 0, maxP95LatencyRatio: 2 });
    const fewOutliers = summary([...runs(97, 2, 0), ...runs(3, 100, 0)]);
    expect(fewOutliers.p95Ms).toBe(2);
    expect(judgeProbation(stats(fewOutliers), p, baseline, 0).verdict).toBe("passed");
    const slowTail = summary([...runs(90, 2, 0), ...runs(10, 100, 0)]);
    expect(judgeProbation(stats(slowTail), p, baseline, 0)).toMatchObject({ code: "LATENCY_REGRESSION" });
  });

  it("fails on the first non-finite output, before the window closes", () => {
    const p = policy({ probationSeconds: 60 });
    const nan = summary([...runs(10, 1, 0), ...runs(1, 1, 0, { nonFinite: 3 })]);
    expect(nan.nonFinite).toBe(1);
    expect(judgeProbation(stats(nan), p, baseline, 10)).toMatchObject({ verdict: "failed", code: "NON_FINITE_OUTPUT" });
  });

  it("fails on error rate above the policy at the close of the window", () => {
    const p = policy({ probationSeconds: 2, maxErrorRatePercent: 5 });
    const errs = [...runs(90, 1, 0), ...runs(10, 1, 0, { ok: false, computeMs: null })];
    const c = summary(errs);
    expect(c).toMatchObject({ requests: 100, errors: 10 });
    expect(judgeProbation(stats(c), p, baseline, 1_000).verdict).toBe("pending");
    expect(judgeProbation(stats(c), p, baseline, 2_000)).toMatchObject({ code: "ERROR_RATE_EXCEEDED" });
    const fine = summary([...runs(96, 1, 0), ...runs(4, 1, 0, { ok: false, computeMs: null })]);
    expect(judgeProbation(stats(fine), p, baseline, 2_000).verdict).toBe("passed");
  });

  it("fails on host restarts beyond the policy and on RSS above the budget, at once", () => {
    const p = policy({ probationSeconds: 60, maxHostRestarts: 2 });
    const c = summary(runs(5, 1, 0));
    expect(judgeProbation(stats({ ...c, hostRestarts: 2 }), p, baseline, 0).verdict).toBe("pending");
    expect(judgeProbation(stats({ ...c, hostRestarts: 3 }), p, baseline, 0)).toMatchObject({ code: "HOST_CRASHED" });
    expect(judgeProbation(stats({ ...c, rssBytes: 600 * MB }), p, baseline, 0)).toMatchObject({
      code: "MEMORY_BUDGET_EXCEEDED",
    });
    expect(judgeProbation(stats(c, 0, { serving: false }), p, baseline, 0)).toMatchObject({ code: "HOST_CRASHED" });
  });
});

describe("health summaries", () => {
  it("computes nearest-rank percentiles and counts", () => {
    expect(percentile([], 95)).toBeNull();
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(
      percentile(
        [...Array(100).keys()].map((i) => i + 1),
        95,
      ),
    ).toBe(95);
    const s = summarize({ version: "1.0.0", sha256: SHA }, runs(3, 1.23456, 0), { hostRestarts: 1, rssBytes: null });
    expect(s).toEqual({
      version: "1.0.0",
      sha256: SHA,
      requests: 3,
      errors: 0,
      nonFinite: 0,
      p50Ms: 1.235,
      p95Ms: 1.235,
      hostRestarts: 1,
      rssBytes: null,
      shadowAgreementPercent: null,
    });
  });
});

describe("host health helpers", () => {
  it("counts NaN/Inf in float outputs only, including float16 bit patterns", () => {
    expect(
      countNonFinite({
        a: { type: "float32", dims: [3], data: new Float32Array([1, Number.NaN, Number.POSITIVE_INFINITY]) },
        b: { type: "int32", dims: [1], data: new Int32Array([7]) },
        c: { type: "float16", dims: [3], data: new Uint16Array([0x3c00, 0x7c00, 0xfe00]) },
      }),
    ).toBe(4);
  });
  it("backs off exponentially for a crash loop and forgets old crashes", () => {
    expect(restartDelayMs([], 0)).toBe(250);
    expect(restartDelayMs([0], 1_000)).toBe(500);
    expect(restartDelayMs([0, 100, 200, 300], 1_000)).toBe(4_000);
    expect(
      restartDelayMs(
        Array.from({ length: 20 }, (_, i) => i),
        1_000,
      ),
    ).toBe(30_000);
    expect(restartDelayMs([0, 100], 120_000)).toBe(250);
  });
});

describe("checkCompatibility (before download)", () => {
  const facts: DeviceFacts = { arch: "x64", memoryBudgetMB: 512, agentVersion: "0.3.0", executionProviders: ["cpu"] };
  const refusal = (over: Parameters<typeof makeManifest>[0], f: DeviceFacts = facts) => {
    try {
      checkCompatibility(makeManifest(over), f);
      return null;
    } catch (err) {
      expect(err).toBeInstanceOf(EdgeFleetError);
      return { code: (err as EdgeFleetError).code, message: (err as EdgeFleetError).message };
    }
  };
  const compat = (c: Partial<ReturnType<typeof makeManifest>["compatibility"]>) => ({
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"], ...c },
  });

  it("accepts a compatible release", () => expect(refusal(compat({}))).toBeNull());
  it("refuses another arch", () =>
    expect(refusal(compat({ arch: ["arm64"] }))).toEqual({
      code: "INCOMPATIBLE",
      message: "vad@1.0.0: built for arm64, device is x64",
    }));
  it("refuses a newer agent requirement", () =>
    expect(refusal(compat({ minAgentVersion: "1.2.0" }))?.message).toContain("needs agent 1.2.0 or later"));
  it("refuses a missing execution provider", () =>
    expect(refusal(compat({ executionProviders: ["cpu", "cuda"] }))?.message).toContain("execution provider(s) cuda"));
  it("refuses a declared minimum above the budget", () =>
    expect(refusal(compat({ minMemoryMB: 4096 }))?.message).toContain("needs 4096 MB"));
  it("refuses a model file too large for the budget", () => {
    const m = makeManifest();
    const big = { ...m, files: m.files.map((f) => (f.path === "model.onnx" ? { ...f, size: 300 * MB } : f)) };
    expect(() => checkCompatibility(big, facts)).toThrow(/model file of 300 MB needs about 664 MB/);
    expect(() => checkCompatibility(big, { ...facts, memoryBudgetMB: 1024 })).not.toThrow();
  });
});
