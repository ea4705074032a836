import { describe, expect, it } from "vitest";
import { evaluateGates } from "../../../fleet-server/rollout/gates.js";
import { observeDevice } from "../../../fleet-server/rollout/observe.js";
import { judge } from "../../../fleet-server/rollout/planner.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { HealthSummary, ReportedSide, ReportedState } from "../../../shared/schemas/device-state.js";

const ACTIVE = sha256Hex("5.0.0");
const SIDE = sha256Hex("5.1.0");
const health = (version: string, sha256: string, over: Partial<HealthSummary> = {}): HealthSummary => ({
  version,
  sha256,
  requests: 40,
  errors: 0,
  nonFinite: 0,
  p50Ms: 1,
  p95Ms: 2,
  hostRestarts: 0,
  rssBytes: null,
  shadowAgreementPercent: null,
  ...over,
});
const reported = (side: ReportedSide): ReportedState => ({
  deviceId: "dev-1",
  agentVersion: "0.1.0",
  profile: "generic-x64",
  arch: "x64",
  ts: "2025-06-01T00:00:00.000Z",
  lastDesiredSeq: 3,
  models: [
    {
      model: "vad",
      state: "committed",
      committed: { version: "5.0.0", variant: "fp32", sha256: ACTIVE, releaseCounter: 1 },
      candidate: null,
      rolloutId: "r1",
      side,
    },
  ],
});
const side = (over: Partial<ReportedSide>): ReportedSide => ({
  mode: "shadow",
  version: "5.1.0",
  sha256: SIDE,
  state: "committed",
  health: health("5.1.0", SIDE, { shadowAgreementPercent: 97.5 }),
  baseline: health("5.0.0", ACTIVE),
  ...over,
});
const observe = (s: ReportedSide) =>
  observeDevice({ model: "vad", bundle: SIDE, desiredSeq: 3, reported: reported(s), events: [] });

describe("observeDevice with a side candidate (shadow / A-B)", () => {
  it("a running side passes, and its health is what the shadow-agreement gate reads", () => {
    const o = observe(side({}));
    expect(o.state).toBe("committed");
    expect(o.probation).toMatchObject({ verdict: "passed", candidate: { shadowAgreementPercent: 97.5 } });
    expect(judge(o)).toMatchObject({ outcome: "passed" });
    const gates = evaluateGates(
      { minDevices: 1, maxFailedPercent: 0, minShadowAgreementPercent: 95, minRequestsPerDevice: 20 },
      [{ outcome: "passed", probation: o.probation }],
    );
    expect(gates).toMatchObject({ shadowAgreementPercent: 97.5, shadowDevices: 1, passing: true });
    const low = observe(side({ health: health("5.1.0", SIDE, { shadowAgreementPercent: 80 }) }));
    const tripped = evaluateGates(
      { minDevices: 1, maxFailedPercent: 0, minShadowAgreementPercent: 95, minRequestsPerDevice: 20 },
      [{ outcome: "passed", probation: low.probation }],
    );
    expect(tripped.breached).toContain("shadow agreement 80%");
  });
  it("an A/B side's latency is judged against the active version over the same window", () => {
    const o = observe(side({ mode: "ab", health: health("5.1.0", SIDE, { p95Ms: 8 }) }));
    const gates = evaluateGates(
      { minDevices: 1, maxFailedPercent: 0, maxP95LatencyRatio: 2, minRequestsPerDevice: 20 },
      [{ outcome: "passed", probation: o.probation }],
    );
    expect(gates.p95LatencyRatio).toBe(4);
    expect(gates.breached).toContain("p95 latency ratio");
  });
  it("a side still installing is in progress; a failed one fails the device with its error", () => {
    expect(judge(observe(side({ state: "downloading" })))).toEqual({ phase: "download" });
    expect(judge(observe(side({ state: "smoke-testing" })))).toEqual({ phase: "install" });
    const failed = observe(
      side({ state: "failed", error: { code: "SMOKE_TEST_FAILED", message: "sample 1 non-finite" } }),
    );
    expect(failed.error?.code).toBe("SMOKE_TEST_FAILED");
    expect(judge(failed)).toMatchObject({ outcome: "failed", reason: "SMOKE_TEST_FAILED" });
  });
});
