import { describe, expect, it } from "vitest";
import {
  chooseVariant,
  MIN_MEASURED_REQUESTS,
  type VariantCandidate,
  type VariantProfile,
  whyNotPreferred,
} from "../../../fleet-server/rollout/choose-variant.js";
import { CreateRolloutRequestSchema, normalizeDefinition } from "../../../fleet-server/rollout/definition.js";
import {
  measurementsFromReport,
  shouldReplaceMeasurement,
} from "../../../fleet-server/rollout/variant-measurements.js";
import type { Variant } from "../../../shared/schemas/common.js";
import type { HealthSummary, ProbationReport } from "../../../shared/schemas/device-state.js";

const MIB = 1024 * 1024;

function variant(v: Variant, over: Partial<VariantCandidate> = {}): VariantCandidate {
  return { variant: v, published: true, minMemoryMB: 0, modelBytes: (v === "int8" ? 1 : 4) * MIB, ...over };
}
const BOTH = [variant("fp32"), variant("int8")];
const PI4: VariantProfile = { id: "raspberry-pi-4", preferredVariants: ["int8", "fp32"], memoryBudgetMB: 1500 };
const X64: VariantProfile = { id: "generic-x64", preferredVariants: ["fp32", "int8"], memoryBudgetMB: 2048 };
const INT8_ONLY: VariantProfile = { id: "tiny", preferredVariants: ["int8"], memoryBudgetMB: 64 };
const enough = MIN_MEASURED_REQUESTS;

describe("chooseVariant: profile order", () => {
  it("gives each profile the first of its preferred variants", () => {
    expect(chooseVariant(BOTH, PI4, [])).toEqual({ variant: "int8", reason: "profile" });
    expect(chooseVariant(BOTH, X64, [])).toEqual({ variant: "fp32", reason: "profile" });
  });

  it("skips a variant that failed validation (not published)", () => {
    const variants = [variant("fp32"), variant("int8", { published: false })];
    expect(chooseVariant(variants, PI4, [])).toEqual({ variant: "fp32", reason: "profile" });
  });

  it("skips a variant the version does not have (quantize none)", () => {
    expect(chooseVariant([variant("fp32")], PI4, [])).toEqual({ variant: "fp32", reason: "profile" });
  });

  it("falls back to fp32 when no preferred variant is published", () => {
    const variants = [variant("fp32"), variant("int8", { published: false })];
    expect(chooseVariant(variants, INT8_ONLY, [])).toEqual({ variant: "fp32", reason: "fallback" });
  });

  it("gives fp32 to a device without a known profile, whatever was measured", () => {
    const measured = [
      { variant: "int8" as const, p50Ms: 1, requests: 1000 },
      { variant: "fp32" as const, p50Ms: 9, requests: 1000 },
    ];
    expect(chooseVariant(BOTH, null, measured)).toEqual({ variant: "fp32", reason: "unknown-profile" });
  });
});

describe("chooseVariant: memory budget", () => {
  it("skips a variant whose manifest minMemoryMB exceeds the budget", () => {
    const variants = [variant("fp32"), variant("int8", { minMemoryMB: 2000 })];
    expect(chooseVariant(variants, PI4, [])).toEqual({ variant: "fp32", reason: "profile" });
    // Exactly at the budget fits.
    const atBudget = [variant("fp32"), variant("int8", { minMemoryMB: 1500 })];
    expect(chooseVariant(atBudget, PI4, []).variant).toBe("int8");
  });

  it("skips a variant whose model alone is larger than the budget", () => {
    const variants = [variant("fp32", { modelBytes: 100 * MIB }), variant("int8", { modelBytes: 25 * MIB })];
    const small: VariantProfile = { id: "small", preferredVariants: ["fp32", "int8"], memoryBudgetMB: 64 };
    expect(chooseVariant(variants, small, [])).toEqual({ variant: "int8", reason: "profile" });
  });

  it("still falls back to fp32 when nothing fits (the device's agent then judges it)", () => {
    const variants = [variant("fp32", { modelBytes: 100 * MIB }), variant("int8", { modelBytes: 80 * MIB })];
    expect(chooseVariant(variants, INT8_ONLY, [])).toEqual({ variant: "fp32", reason: "fallback" });
  });
});

describe("chooseVariant: measured on the device", () => {
  it("prefers the variant measured faster when both have enough requests", () => {
    const measured = [
      { variant: "int8" as const, p50Ms: 4.2, requests: enough },
      { variant: "fp32" as const, p50Ms: 3.1, requests: enough + 10 },
    ];
    expect(chooseVariant(BOTH, PI4, measured)).toEqual({ variant: "fp32", reason: "measured-faster" });
    // The same figures confirm the x64 profile's own order.
    expect(chooseVariant(BOTH, X64, measured)).toEqual({ variant: "fp32", reason: "profile" });
  });

  it("ignores measurements below the minimum number of requests", () => {
    const measured = [
      { variant: "int8" as const, p50Ms: 4.2, requests: enough - 1 },
      { variant: "fp32" as const, p50Ms: 3.1, requests: 5000 },
    ];
    expect(chooseVariant(BOTH, PI4, measured)).toEqual({ variant: "int8", reason: "profile" });
    expect(chooseVariant(BOTH, PI4, measured, enough - 1)).toEqual({ variant: "fp32", reason: "measured-faster" });
  });

  it("needs both variants measured: one alone says nothing about the other", () => {
    const measured = [{ variant: "fp32" as const, p50Ms: 0.1, requests: 5000 }];
    expect(chooseVariant(BOTH, PI4, measured)).toEqual({ variant: "int8", reason: "profile" });
  });

  it("keeps the profile order on a tie and on a missing median", () => {
    const tie = [
      { variant: "int8" as const, p50Ms: 3, requests: enough },
      { variant: "fp32" as const, p50Ms: 3, requests: enough },
    ];
    expect(chooseVariant(BOTH, PI4, tie)).toEqual({ variant: "int8", reason: "profile" });
    const noMedian = [
      { variant: "int8" as const, p50Ms: null, requests: enough },
      { variant: "fp32" as const, p50Ms: 1, requests: enough },
    ];
    expect(chooseVariant(BOTH, PI4, noMedian).variant).toBe("int8");
  });

  it("never picks a faster variant that is unpublished or over budget", () => {
    const measured = [
      { variant: "int8" as const, p50Ms: 1, requests: enough },
      { variant: "fp32" as const, p50Ms: 9, requests: enough },
    ];
    const unpublished = [variant("fp32"), variant("int8", { published: false })];
    expect(chooseVariant(unpublished, X64, measured)).toEqual({ variant: "fp32", reason: "profile" });
    const tooBig = [variant("fp32"), variant("int8", { minMemoryMB: 4096 })];
    expect(chooseVariant(tooBig, X64, measured)).toEqual({ variant: "fp32", reason: "profile" });
    expect(chooseVariant(BOTH, X64, measured)).toEqual({ variant: "int8", reason: "measured-faster" });
  });
});

const SHA_FP32 = "a".repeat(64);
const SHA_INT8 = "b".repeat(64);

function summary(sha256: string, requests: number, p50Ms: number | null): HealthSummary {
  return {
    version: "1.0.0",
    sha256,
    requests,
    errors: 0,
    nonFinite: 0,
    p50Ms,
    p95Ms: p50Ms === null ? null : p50Ms * 2,
    hostRestarts: 0,
    rssBytes: null,
    shadowAgreementPercent: null,
  };
}

function report(candidate: HealthSummary, baseline: HealthSummary | null): ProbationReport {
  return { verdict: "passed", startedAt: "2025-03-03T00:00:00Z", candidate, baseline };
}

describe("measurements from probation reports", () => {
  const variantOf = (sha: string): Variant | null => (sha === SHA_FP32 ? "fp32" : sha === SHA_INT8 ? "int8" : null);
  const base = { deviceId: "d1", model: "m", variantOf, at: "2025-03-03T00:10:00Z" };

  it("yields the candidate and the baseline, each under its bundle's variant", () => {
    const out = measurementsFromReport({
      ...base,
      report: report(summary(SHA_INT8, 80, 2.5), summary(SHA_FP32, 90, 4)),
    });
    expect(out.map((m) => [m.variant, m.p50Ms, m.requests])).toEqual([
      ["int8", 2.5, 80],
      ["fp32", 4, 90],
    ]);
    expect(out[0]).toMatchObject({ deviceId: "d1", model: "m", sha256: SHA_INT8, p95Ms: 5, version: "1.0.0" });
  });

  it("skips summaries without a median or requests, and bundles of unknown variant", () => {
    expect(measurementsFromReport({ ...base, report: report(summary(SHA_INT8, 0, null), null) })).toEqual([]);
    expect(measurementsFromReport({ ...base, report: report(summary("c".repeat(64), 80, 1), null) })).toEqual([]);
  });

  it("replaces a stored figure only with one that is at least as good", () => {
    const stored = { sha256: SHA_INT8, requests: enough + 5 };
    // Same bundle: a later report of the same probation carries more requests.
    expect(shouldReplaceMeasurement(stored, { sha256: SHA_INT8, requests: enough + 6 })).toBe(true);
    expect(shouldReplaceMeasurement(stored, { sha256: SHA_INT8, requests: 3 })).toBe(false);
    // Another bundle of the variant (a newer version): only once it has enough requests itself.
    expect(shouldReplaceMeasurement(stored, { sha256: "d".repeat(64), requests: 3 })).toBe(false);
    expect(shouldReplaceMeasurement(stored, { sha256: "d".repeat(64), requests: enough })).toBe(true);
    // A figure that was never usable is replaced by anything newer.
    expect(shouldReplaceMeasurement({ sha256: SHA_INT8, requests: 2 }, { sha256: "d".repeat(64), requests: 1 })).toBe(
      true,
    );
    expect(shouldReplaceMeasurement(null, { sha256: SHA_INT8, requests: 1 })).toBe(true);
  });
});

describe("rollout definition: variant", () => {
  const base = { model: "m", version: "1.0.0", target: { tags: { site: "lab" } } };
  it("is chosen per device when omitted or auto, fixed when given, refused when unknown", () => {
    expect(normalizeDefinition(CreateRolloutRequestSchema.parse(base)).variant).toBe("auto");
    expect(normalizeDefinition(CreateRolloutRequestSchema.parse({ ...base, variant: "auto" })).variant).toBe("auto");
    expect(normalizeDefinition(CreateRolloutRequestSchema.parse({ ...base, variant: "int8" })).variant).toBe("int8");
    expect(CreateRolloutRequestSchema.safeParse({ ...base, variant: "fp16" }).success).toBe(false);
  });
});

describe("whyNotPreferred: the rollout view says why (issue 20 §7)", () => {
  it("names the reason each preferred variant ahead of the chosen one was skipped", () => {
    expect(whyNotPreferred([variant("fp32"), variant("int8", { published: false })], PI4, "fp32")).toBe(
      "int8 not published: failed validation",
    );
    expect(whyNotPreferred([variant("fp32")], PI4, "fp32")).toBe("int8 not built for this version");
    expect(whyNotPreferred([variant("fp32"), variant("int8", { minMemoryMB: 2000 })], PI4, "fp32")).toBe(
      "int8 needs 2000 MB > profile budget 1500 MB",
    );
    expect(whyNotPreferred([variant("fp32"), variant("int8", { modelBytes: 80 * MIB })], INT8_ONLY, "fp32")).toBe(
      "int8 model 80 MB > profile budget 64 MB",
    );
    expect(whyNotPreferred(BOTH, X64, "int8")).toBe("fp32 measured slower on this device");
    expect(whyNotPreferred(BOTH, null, "fp32")).toBe("the device's profile is unknown to the server: fp32");
  });

  it("is null when the device got its first choice", () => {
    expect(whyNotPreferred(BOTH, PI4, "int8")).toBeNull();
    expect(whyNotPreferred(BOTH, X64, "fp32")).toBeNull();
  });
});

describe("chooseVariant: the server's own int8 timing (issue 17)", () => {
  const X64_INT8: VariantProfile = {
    id: "x64-int8",
    preferredVariants: ["int8", "fp32"],
    memoryBudgetMB: 2048,
    match: { arch: ["x64"] },
  };
  const ARM_INT8: VariantProfile = { ...X64_INT8, id: "arm-int8", match: { arch: ["arm64"] } };
  const slowInt8 = [variant("fp32"), variant("int8", { serverLatencyRatio: 1.3 })];
  const fastInt8 = [variant("fp32"), variant("int8", { serverLatencyRatio: 0.7 })];

  it("does not default a class of the server's arch to an int8 variant the server timed slower than fp32", () => {
    expect(chooseVariant(slowInt8, X64_INT8, [], enough, "x64")).toEqual({
      variant: "fp32",
      reason: "server-measured-slower",
    });
    expect(whyNotPreferred(slowInt8, X64_INT8, "fp32", "x64")).toBe(
      "int8 ran x1.3 of fp32's time on the server's CPU (x64, this class)",
    );
    expect(chooseVariant(fastInt8, X64_INT8, [], enough, "x64")).toEqual({ variant: "int8", reason: "profile" });
  });

  it("leaves other classes to their profile: the server's CPU says nothing about an arm64 board", () => {
    expect(chooseVariant(slowInt8, ARM_INT8, [], enough, "x64")).toEqual({ variant: "int8", reason: "profile" });
    expect(chooseVariant(slowInt8, PI4, [], enough, "x64")).toEqual({ variant: "int8", reason: "profile" });
  });

  it("lets the device's own measurements of both variants override the server's", () => {
    const measured = [
      { variant: "int8" as const, p50Ms: 1, requests: enough },
      { variant: "fp32" as const, p50Ms: 2, requests: enough },
    ];
    expect(chooseVariant(slowInt8, X64_INT8, measured, enough, "x64")).toEqual({ variant: "int8", reason: "profile" });
    const slower = [
      { variant: "int8" as const, p50Ms: 3, requests: enough },
      { variant: "fp32" as const, p50Ms: 2, requests: enough },
    ];
    expect(chooseVariant(fastInt8, X64_INT8, slower, enough, "x64")).toEqual({
      variant: "fp32",
      reason: "measured-faster",
    });
  });
});
