import { describe, expect, it } from "vitest";
import { observeDevice } from "../../../fleet-server/rollout/observe.js";
import { currentGates, type PlannerDevice, planRolloutStep } from "../../../fleet-server/rollout/planner.js";
import type { ReportedState } from "../../../shared/schemas/device-state.js";
import { definition, device, member, obs, probation, rollout, SEC, T0 } from "./fixtures.js";

/** One stage with an accuracy gate: δ 3 points, 1,000 joined samples per arm, 600 s to get them. */
const DEF = definition({
  stages: [
    {
      percent: 100,
      soakSeconds: 60,
      gates: { accuracy: { maxDropPercent: 3, minSamples: 1000, maxWaitSeconds: 600 } },
    },
  ],
});

/** Four committed members, each with `n` joined samples per arm at the given accuracies. */
function devices(n: number, candidate: number, baseline: number): PlannerDevice[] {
  return ["a", "b", "c", "d"].map((id) =>
    device(id, {
      member: member({ outcome: "passed", phase: "done" }),
      observation: obs("committed", {
        feedback: {
          candidate: { joined: n, correct: Math.round(n * candidate) },
          baseline: { joined: n, correct: Math.round(n * baseline) },
        },
      }),
    }),
  );
}

describe("planner: the accuracy gate decides once per stage (issue 22)", () => {
  it("waits below the sample size, then stops the rollout as 'insufficient' once the wait is over", () => {
    const r = rollout(DEF, { soakStartedAt: T0 });
    const few = devices(100, 0.9, 0.9);
    expect(planRolloutStep(r, few, T0 + 60 * SEC)).toEqual([]);
    expect(currentGates(r, few, T0 + 60 * SEC).waitingFor).toContain("accuracy: 400/1000 candidate");
    const late = planRolloutStep(r, few, T0 + 600 * SEC);
    expect(late.map((a) => a.kind)).toEqual(["accuracy-verdict", "pause"]);
    expect(late[0]).toMatchObject({ decision: { stage: 0, verdict: "insufficient" } });
    expect(late[1]).toMatchObject({ reason: expect.stringContaining("fewer than 1000 joined samples") });
  });

  it("an equal candidate passes at the look and the stage completes after its soak", () => {
    const r = rollout(DEF, { soakStartedAt: T0 });
    const actions = planRolloutStep(r, devices(400, 0.92, 0.92), T0 + 60 * SEC);
    expect(actions.map((a) => a.kind)).toEqual(["accuracy-verdict", "complete"]);
    expect(actions[0]).toMatchObject({
      decision: { verdict: "pass", candidate: { n: 1600, accuracy: 0.92 }, baseline: { n: 1600 } },
    });
  });

  it("a candidate 10 points worse is stopped with the figures in the reason", () => {
    const r = rollout(DEF, { soakStartedAt: T0 });
    const actions = planRolloutStep(r, devices(400, 0.8, 0.9), T0 + 10 * SEC);
    expect(actions.map((a) => a.kind)).toEqual(["accuracy-verdict", "pause"]);
    expect(actions[1]).toMatchObject({ reason: expect.stringMatching(/not shown within 3 points.*n=1600/) });
  });

  it("keeps its decision: later counts do not reopen it (a fixed-sample test looks once)", () => {
    const first = planRolloutStep(rollout(DEF, { soakStartedAt: T0 }), devices(400, 0.92, 0.92), T0 + 10 * SEC);
    const decision = first.find((a) => a.kind === "accuracy-verdict");
    if (decision?.kind !== "accuracy-verdict") throw new Error("no decision");
    const decided = rollout(DEF, { soakStartedAt: T0, accuracy: decision.decision });
    // The same stage, now with figures that would fail: no new decision, the stage completes.
    expect(planRolloutStep(decided, devices(800, 0.7, 0.92), T0 + 60 * SEC)).toEqual([{ kind: "complete" }]);
    expect(currentGates(decided, devices(800, 0.7, 0.92)).accuracy).toMatchObject({ verdict: "pass", decided: true });
    // A decision for another stage is not this stage's.
    const other = rollout(DEF, { soakStartedAt: T0, accuracy: { ...decision.decision, stage: 1 } });
    expect(currentGates(other, devices(800, 0.7, 0.92)).accuracy).toMatchObject({ verdict: "fail", decided: false });
  });

  it("observeDevice pools a device's reported counts by version: candidate vs the probation baseline", () => {
    const report = probation("passed", { requests: 50, p95Ms: 1 }, { requests: 50, p95Ms: 1 });
    report.baseline = { ...report.baseline!, version: "1.0.0" };
    const reported: ReportedState = {
      deviceId: "a",
      agentVersion: "0.1.0",
      profile: "generic-x64",
      arch: "x64",
      ts: new Date(T0).toISOString(),
      lastDesiredSeq: 1,
      models: [
        {
          model: "m",
          state: "committed",
          committed: { version: "2.0.0", sha256: "c".repeat(64), variant: "fp32", releaseCounter: 1 },
          candidate: null,
          rolloutId: "r-test",
          probation: report,
          feedback: [
            { version: "1.0.0", arm: null, joined: 300, correct: 270 },
            { version: "2.0.0", arm: "control", joined: 10, correct: 9 },
            { version: "2.0.0", arm: null, joined: 100, correct: 95 },
            { version: "0.9.0", arm: null, joined: 999, correct: 1 },
          ],
        },
      ],
    };
    const o = observeDevice({ model: "m", bundle: "c".repeat(64), desiredSeq: 1, reported, events: [] });
    expect(o.feedback).toEqual({ candidate: { joined: 110, correct: 104 }, baseline: { joined: 300, correct: 270 } });
    // Without feedback in the report the gate has nothing from this device.
    const bare = { ...reported, models: [{ ...reported.models[0]!, feedback: undefined }] };
    expect(
      observeDevice({ model: "m", bundle: "c".repeat(64), desiredSeq: 1, reported: bare, events: [] }).feedback,
    ).toBeUndefined();
  });
});
