import { describe, expect, it } from "vitest";
import { CreateRolloutRequestSchema } from "../../../fleet-server/rollout/definition.js";
import { evaluateGates } from "../../../fleet-server/rollout/gates.js";
import { isWindowOpen } from "../../../fleet-server/rollout/maintenance-window.js";
import { definition, probation } from "./fixtures.js";

const gates = (g: Record<string, unknown>) => definition({ stages: [{ percent: 100, gates: g }] }).stages[0]!.gates;

describe("evaluateGates", () => {
  it("pools the error rate over devices with enough requests", () => {
    const g = gates({ minDevices: 2, maxErrorRatePercent: 2, minRequestsPerDevice: 100 });
    const dev = (requests: number, errors: number) => ({
      outcome: "passed" as const,
      probation: probation("passed", { requests, p95Ms: 5, errors }, null),
    });
    const e = evaluateGates(g, [dev(100, 1), dev(300, 11), dev(50, 50)]);
    // 12 errors in 400 requests = 3% (the 50-request device is not counted).
    expect(e).toMatchObject({ errorDevices: 2, errorRatePercent: 3, passing: false });
    expect(e.breached).toBe("error rate 3% > maxErrorRatePercent 2");
    expect(evaluateGates(g, [dev(100, 1), dev(300, 1)])).toMatchObject({ passing: true, breached: null });
  });

  it("averages shadow agreement and waits for enough devices", () => {
    const g = definition({
      strategy: "shadow",
      stages: [{ percent: 100, gates: { minDevices: 2, minShadowAgreementPercent: 98 } }],
    }).stages[0]!.gates;
    const dev = (agree: number) => ({
      outcome: "passed" as const,
      probation: probation("passed", { requests: 500, p95Ms: 5, shadow: agree }, { requests: 500, p95Ms: 5 }),
    });
    expect(evaluateGates(g, [dev(99)])).toMatchObject({
      passing: false,
      breached: null,
      waitingFor: "1/2 devices executed; shadow agreement from 1/2 devices",
    });
    expect(evaluateGates(g, [dev(99), dev(96)]).breached).toBe("shadow agreement 97.5% < minShadowAgreementPercent 98");
    expect(evaluateGates(g, [dev(99), dev(98)]).passing).toBe(true);
  });
});

describe("evaluateGates: latency like with like (issue 20 §6)", () => {
  const g = gates({ minDevices: 2, maxFailedPercent: 0, maxP95LatencyRatio: 2, minRequestsPerDevice: 20 });
  // Idle before the swap (50 ms), loaded after it (150 ms): the unpaired p95 ratio is 3.
  const loaded = (pairs: number, ratio: number | null) => ({
    outcome: "passed" as const,
    probation: {
      ...probation("passed", { requests: 100, p95Ms: 150 }, { requests: 100, p95Ms: 50 }),
      pairedLatency: {
        pairs,
        ratio,
        ratioLow: ratio === null ? null : ratio * 0.9,
        candidateP50Ms: 140,
        previousP50Ms: 140,
        candidateP95Ms: 150,
        previousP95Ms: 150,
      },
    },
  });

  it("judges the paired ratio when devices report enough pairs: equal speed under load passes", () => {
    const e = evaluateGates(g, [loaded(30, 1.02), loaded(30, 0.98)]);
    expect(e).toMatchObject({ p95LatencyRatio: 1, latencyDevices: 2, pairedLatencyDevices: 2, breached: null });
  });

  it("still trips on a candidate that is slower in the pairs", () => {
    const e = evaluateGates(g, [loaded(30, 3.1), loaded(30, 2.9)]);
    expect(e.breached).toContain("p95 latency ratio 3.00");
  });

  it("falls back to the p95 ratio without enough pairs (and says so in pairedLatencyDevices)", () => {
    const e = evaluateGates(g, [loaded(3, 1), loaded(30, null)]);
    expect(e).toMatchObject({ p95LatencyRatio: 3, latencyDevices: 2, pairedLatencyDevices: 0 });
    expect(e.breached).toContain("p95 latency ratio 3.00");
  });
});

describe("rollout definition", () => {
  const parse = (over: Record<string, unknown>) =>
    CreateRolloutRequestSchema.safeParse({ model: "m", version: "1.0.0", target: { tags: ["site=lab"] }, ...over });

  it("normalizes key=value tags and defaults to all-at-once", () => {
    const d = definition({ target: { tags: ["site=lab", "ring=a=b"] } });
    expect(d.target.tags).toEqual({ site: "lab", ring: "a=b" });
    expect(d.strategy).toBe("all-at-once");
    expect(d.stages).toEqual([{ percent: 100, soakSeconds: 0, gates: expect.objectContaining({ minDevices: 1 }) }]);
    // A probation deadline always outlasts the probation itself.
    expect(definition({ healthPolicy: { probationSeconds: 3600 } }).deadlines.probationSeconds).toBe(4200);
  });

  it("refuses strategy mismatches and unknown fields", () => {
    expect(
      parse({ strategy: "all-at-once", stages: [{ percent: 50 }, { percent: 100 }] }).error?.issues[0]?.message,
    ).toBe("all-at-once takes at most one stage");
    expect(parse({ strategy: "canary" }).error?.issues[0]?.message).toBe("canary needs stages");
    expect(parse({ abWeight: 0.3 }).error?.issues[0]?.message).toBe("abWeight applies to the ab strategy only");
    expect(parse({ stages: [{ percent: 100, soak: 5 }] }).success).toBe(false);
    expect(parse({ rate: { maxPerMinute: 5, exponential: {} } }).success).toBe(false);
  });

  it("opens maintenance windows on the last day of the month in the window's zone", () => {
    const w = { cron: "0 23 L * *", durationMinutes: 30, timeZone: "America/New_York" };
    expect(isWindowOpen(w, Date.parse("2025-02-28T23:10:00-05:00"))).toBe(true);
    expect(isWindowOpen(w, Date.parse("2025-02-27T23:10:00-05:00"))).toBe(false);
    expect(isWindowOpen(w, Date.parse("2025-02-28T23:30:00-05:00"))).toBe(false);
  });
});
