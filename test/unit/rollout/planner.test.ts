import { describe, expect, it } from "vitest";
import {
  cohortKey,
  type PlannerDevice,
  planRolloutStep,
  type RolloutAction,
  ratePerMinute,
} from "../../../fleet-server/rollout/planner.js";
import { createFakeClock } from "../../../shared/clock.js";
import { definition, device, fleet, member, obs, probation, rollout, SEC, T0 } from "./fixtures.js";

const kinds = (actions: RolloutAction[]) => actions.map((a) => a.kind);
const assigned = (actions: RolloutAction[]) => actions.flatMap((a) => (a.kind === "assign" ? [a.deviceId] : [])).sort();

/** Replaces the first `k` devices (in cohort order) by members with the given observation. */
function withMembers(
  devices: PlannerDevice[],
  k: number,
  make: (i: number) => Partial<PlannerDevice>,
): PlannerDevice[] {
  const order = [...devices].sort((a, b) =>
    cohortKey("r-test", a.deviceId) < cohortKey("r-test", b.deviceId) ? -1 : 1,
  );
  const chosen = new Map(order.slice(0, k).map((d, i) => [d.deviceId, i]));
  return devices.map((d) => (chosen.has(d.deviceId) ? { ...d, ...make(chosen.get(d.deviceId)!) } : d));
}

const CANARY = {
  stages: [
    { percent: 10, soakSeconds: 60 },
    { percent: 50, soakSeconds: 60 },
    { percent: 100, soakSeconds: 0 },
  ],
};

describe("planRolloutStep: cohorts and stages", () => {
  it("assigns the first stage's share, deterministically in hash order", () => {
    const r = rollout(definition(CANARY));
    const a = planRolloutStep(r, fleet(10), T0);
    expect(assigned(a)).toHaveLength(1);
    expect(assigned(planRolloutStep(r, fleet(10).reverse(), T0))).toEqual(assigned(a));
    // A different rollout id picks its own cohort order (not always the same first device).
    const others = ["r-a", "r-b", "r-c", "r-d", "r-e"].map(
      (id) => assigned(planRolloutStep({ ...r, id }, fleet(10), T0))[0],
    );
    expect(new Set(others).size).toBeGreaterThan(1);
  });

  it("advances only after the soak, and only when the gates pass", () => {
    const clock = createFakeClock(T0);
    const r = rollout(definition(CANARY));
    const devices = withMembers(fleet(10), 1, () => ({
      member: member({ assignedAt: T0 }),
      observation: obs("committed"),
    }));
    // The device just committed: its verdict is recorded and the soak starts, no advance yet.
    const first = planRolloutStep(r, devices, clock.now());
    expect(kinds(first)).toEqual(["device-outcome", "start-soak"]);
    expect(first[0]).toMatchObject({ outcome: "passed", reason: "COMMITTED" });

    const settled = withMembers(fleet(10), 1, () => ({
      member: member({ outcome: "passed", phase: "done" }),
      observation: obs("committed"),
    }));
    const soaking = rollout(definition(CANARY), { soakStartedAt: clock.now() });
    clock.advance(59 * SEC);
    expect(planRolloutStep(soaking, settled, clock.now())).toEqual([]);
    clock.advance(1 * SEC);
    expect(planRolloutStep(soaking, settled, clock.now())).toEqual([{ kind: "advance-stage", to: 1 }]);
  });

  it("does not advance while a stage device has no verdict, and completes after the last stage", () => {
    const r = rollout(definition(CANARY), { soakStartedAt: T0 });
    const busy = withMembers(fleet(10), 1, () => ({ member: member(), observation: obs("downloading") }));
    expect(planRolloutStep(r, busy, T0 + 3600 * SEC - 1)).toEqual([]);

    const last = rollout(definition(CANARY), { stage: 2, soakStartedAt: null });
    const done = fleet(10).map((d) => ({
      ...d,
      member: member({ outcome: "passed" as const, phase: "done" as const, stage: 2 }),
      observation: obs("committed"),
    }));
    expect(kinds(planRolloutStep(last, done, T0))).toEqual(["start-soak", "complete"]);
  });

  it("a late-joining device joins the current stage; a completed rollout still onboards newcomers", () => {
    const r = rollout(definition(CANARY), { stage: 1 });
    // 5 of 10 devices are in (50%); two more now match: ceil(12 * 50%) = 6, one more joins
    // stage 2, drawn in hash order from everyone eligible (newcomers included).
    const base = withMembers(fleet(10), 5, () => ({ member: member({ stage: 1 }), observation: obs("probation") }));
    const a = planRolloutStep(r, [...base, device("late-1"), device("late-2")], T0).filter((x) => x.kind === "assign");
    expect(a).toEqual([{ kind: "assign", deviceId: expect.any(String), stage: 1 }]);
    // At 100% (last stage) every newcomer is assigned.
    const full = rollout(definition(CANARY), { stage: 2 });
    const in100 = fleet(10).map((d) => ({ ...d, member: member({ stage: 2 }), observation: obs("probation") }));
    expect(assigned(planRolloutStep(full, [...in100, device("late-1")], T0))).toEqual(["late-1"]);

    const completed = rollout(definition(CANARY), { stage: 2 }, "completed");
    const all = fleet(10).map((d) => ({
      ...d,
      member: member({ outcome: "passed" as const, phase: "done" as const }),
      observation: obs("committed"),
    }));
    expect(planRolloutStep(completed, [...all, device("late-2")], T0)).toEqual([
      { kind: "assign", deviceId: "late-2", stage: 2 },
    ]);
  });

  it("leaves devices held by another rollout of the model alone, and a superseded rollout does nothing", () => {
    const r = rollout(definition({ strategy: "all-at-once" }));
    const devices = [device("a"), device("b", { heldBy: "r-old" }), device("c", { matches: false })];
    expect(assigned(planRolloutStep(r, devices, T0))).toEqual(["a"]);
    // Once r-old is superseded it no longer holds b: the newer rollout takes it.
    expect(assigned(planRolloutStep(r, [device("a"), device("b"), device("c", { matches: false })], T0))).toEqual([
      "a",
      "b",
    ]);
    expect(planRolloutStep(rollout(definition(), {}, "superseded"), fleet(3), T0)).toEqual([]);
  });
});

describe("planRolloutStep: gates and abort", () => {
  const GATED = {
    stages: [{ percent: 50, gates: { minDevices: 3, maxFailedPercent: 20 } }, { percent: 100 }],
  };

  it("does not pause before minDevices have executed, then pauses when maxFailedPercent is crossed", () => {
    const r = rollout(definition(GATED));
    const failed = (i: number) => ({
      member: member({ outcome: "failed" as const, phase: "done" as const }),
      observation: obs(i < 2 ? "failed" : "downloading"),
    });
    // Two of five executed, both failed (100%) — below the minimum of 3: keep going.
    const two = withMembers(fleet(10), 5, (i) =>
      i < 2 ? failed(i) : { member: member(), observation: obs("downloading") },
    );
    expect(kinds(planRolloutStep(r, two, T0))).not.toContain("pause");

    // A third device commits: 3 executed, 2 failed = 67% > 20%: pause, assign nothing more.
    const three = withMembers(fleet(10), 5, (i) =>
      i < 2
        ? failed(i)
        : i === 2
          ? { member: member(), observation: obs("committed") }
          : { member: member(), observation: obs("downloading") },
    );
    const a = planRolloutStep(r, three, T0);
    expect(a.at(-1)).toMatchObject({ kind: "pause", reason: expect.stringContaining("maxFailedPercent 20") });
    expect(kinds(a)).not.toContain("assign");
  });

  it("stays under the threshold: 0 of 3 failed does not pause", () => {
    const r = rollout(definition(GATED));
    const ok = withMembers(fleet(10), 3, () => ({ member: member(), observation: obs("committed") }));
    expect(kinds(planRolloutStep(r, ok, T0))).not.toContain("pause");
  });

  it("rolls back automatically when the abort action is rollback", () => {
    const r = rollout(definition({ ...GATED, abort: { action: "rollback" } }));
    const bad = withMembers(fleet(10), 3, () => ({
      member: member(),
      observation: obs("failed", { error: { code: "INCOMPATIBLE", message: "built for arm64" } }),
    }));
    const a = planRolloutStep(r, bad, T0);
    expect(a.filter((x) => x.kind === "device-outcome")).toHaveLength(3);
    expect(a.at(-1)).toMatchObject({ kind: "rollback", reason: expect.stringContaining("stage 1 gate") });
  });

  it("applies the rollout-wide abort threshold at any stage", () => {
    const r = rollout(
      definition({
        stages: [{ percent: 100, gates: { maxFailedPercent: 100 } }],
        abort: { maxFailedPercent: 10, minExecuted: 4, action: "rollback" },
      }),
    );
    const mixed = withMembers(fleet(10), 4, (i) => ({
      member: member(),
      observation: obs(i === 0 ? "reverted" : "committed"),
    }));
    expect(planRolloutStep(r, mixed, T0).at(-1)).toMatchObject({
      kind: "rollback",
      reason: expect.stringContaining("abort threshold"),
    });
  });

  it("trips the latency-ratio gate from probation reports, counting only devices with enough samples", () => {
    const def = definition({
      stages: [{ percent: 100, gates: { minDevices: 2, maxP95LatencyRatio: 1.5, minRequestsPerDevice: 50 } }],
    });
    const slow = (requests: number) =>
      obs("probation", { probation: probation("pending", { requests, p95Ms: 30 }, { requests: 500, p95Ms: 10 }) });
    // One device with samples, one without: not enough evidence yet (no pause, no pass).
    const thin = [
      device("a", { member: member(), observation: slow(500) }),
      device("b", { member: member(), observation: slow(10) }),
    ];
    const a = planRolloutStep(rollout(def), thin, T0);
    expect(kinds(a)).not.toContain("pause");
    // Both with samples: median ratio 3 > 1.5 → pause.
    const both = [
      device("a", { member: member(), observation: slow(500) }),
      device("b", { member: member(), observation: slow(60) }),
    ];
    expect(planRolloutStep(rollout(def), both, T0).at(-1)).toMatchObject({
      kind: "pause",
      reason: expect.stringContaining("p95 latency ratio 3.00 > maxP95LatencyRatio 1.5"),
    });
    // A ratio of 1.2 passes: with verdicts in and no soak, the rollout completes.
    const fine = (id: string) =>
      device(id, {
        member: member({ outcome: "passed", phase: "done" }),
        observation: obs("committed", {
          probation: probation("passed", { requests: 100, p95Ms: 12 }, { requests: 100, p95Ms: 10 }),
        }),
      });
    expect(kinds(planRolloutStep(rollout(def), [fine("a"), fine("b")], T0))).toEqual(["start-soak", "complete"]);
  });

  it("counts a failed probation verdict as a failure with its reason", () => {
    const r = rollout(definition());
    const d = device("a", {
      member: member(),
      observation: obs("probation", {
        probation: { ...probation("failed", { requests: 9, p95Ms: 1 }, null), reason: "NON_FINITE_OUTPUT" },
      }),
    });
    expect(planRolloutStep(r, [d], T0)[0]).toMatchObject({
      kind: "device-outcome",
      outcome: "failed",
      reason: "NON_FINITE_OUTPUT",
    });
  });

  it("a paused rollout assigns nothing but still records verdicts", () => {
    const r = rollout(definition(), {}, "paused");
    const devices = [device("a", { member: member(), observation: obs("committed") }), device("b")];
    expect(kinds(planRolloutStep(r, devices, T0))).toEqual(["device-outcome"]);
  });
});

describe("planRolloutStep: deadlines, rate and maintenance windows", () => {
  it("fails a device with reason TIMEOUT when its phase outlives the deadline; progress resets the clock", () => {
    const clock = createFakeClock(T0);
    const r = rollout(definition({ deadlines: { downloadSeconds: 600, installSeconds: 300, probationSeconds: 900 } }));
    const stuck = [
      device("a", { member: member({ phase: "download", phaseSince: T0 }), observation: obs("downloading") }),
    ];
    clock.advance(599 * SEC);
    expect(planRolloutStep(r, stuck, clock.now())).toEqual([]);
    clock.advance(1 * SEC);
    expect(planRolloutStep(r, stuck, clock.now())[0]).toEqual({
      kind: "device-outcome",
      deviceId: "a",
      outcome: "failed",
      reason: "TIMEOUT",
      message: "download deadline of 600s passed",
    });
    // The device moved on to installing: a new phase, a new clock.
    const moving = [
      device("a", { member: member({ phase: "download", phaseSince: T0 }), observation: obs("loading") }),
    ];
    expect(planRolloutStep(r, moving, clock.now())).toEqual([
      { kind: "device-phase", deviceId: "a", phase: "install" },
    ]);
  });

  it("grows an exponential rate with successes and respects the per-minute budget", () => {
    const def = definition({ rate: { exponential: { base: 1, factor: 2, afterSuccesses: 2, maxPerMinute: 6 } } });
    expect([0, 1, 2, 4, 6, 100].map((p) => ratePerMinute(def, p))).toEqual([1, 1, 2, 4, 6, 6]);

    const clock = createFakeClock(T0);
    const r = rollout(def);
    expect(assigned(planRolloutStep(r, fleet(20), clock.now()))).toHaveLength(1);
    // One assigned 10 s ago, not yet passed: the budget for this minute is spent.
    clock.advance(10 * SEC);
    const one = withMembers(fleet(20), 1, () => ({
      member: member({ assignedAt: T0 }),
      observation: obs("downloading"),
    }));
    expect(assigned(planRolloutStep(r, one, clock.now()))).toHaveLength(0);
    // Two passed, assigned over a minute ago: the rate doubled to 2 per minute.
    clock.advance(60 * SEC);
    const two = withMembers(fleet(20), 2, () => ({
      member: member({ assignedAt: T0, outcome: "passed", phase: "done" }),
      observation: obs("committed"),
    }));
    expect(assigned(planRolloutStep(r, two, clock.now()))).toHaveLength(2);
    expect(assigned(planRolloutStep(rollout(definition({ rate: { maxPerMinute: 3 } })), fleet(20), T0))).toHaveLength(
      3,
    );
  });

  it("assigns only while the maintenance window is open", () => {
    const clock = createFakeClock(Date.parse("2025-03-03T00:59:00Z"));
    const r = rollout(
      definition({ maintenanceWindow: { cron: "0 2 * * *", durationMinutes: 60, timeZone: "Europe/Berlin" } }),
    );
    expect(assigned(planRolloutStep(r, fleet(3), clock.now()))).toEqual([]); // 01:59 Berlin: closed
    clock.advance(60 * SEC); // 02:00 Berlin: opens
    expect(assigned(planRolloutStep(r, fleet(3), clock.now()))).toHaveLength(3);
    clock.advance(59 * 60 * SEC + 59 * SEC); // 02:59:59: still open
    expect(assigned(planRolloutStep(r, fleet(3), clock.now()))).toHaveLength(3);
    clock.advance(SEC); // 03:00: closed again
    expect(assigned(planRolloutStep(r, fleet(3), clock.now()))).toEqual([]);
  });
});
