import { describe, expect, it } from "vitest";
import { ROLLBACK_REMOVED } from "../../../fleet-server/rollout/executor.js";
import { planRollback, type RollbackMember } from "../../../fleet-server/rollout/planner.js";
import { memberState } from "../../../fleet-server/rollout/view.js";

/**
 * `rollback` undoes a rollout per device: a side version not promoted is only removed (the device
 * never stopped running its previous version), a replaced active version comes back re-released.
 */
const PREV = "a".repeat(64);
const OTHER = "b".repeat(64);
const m = (deviceId: string, over: Partial<RollbackMember> = {}): RollbackMember => ({
  deviceId,
  handled: false,
  sideAssigned: false,
  previousSha256: PREV,
  ...over,
});

describe("planRollback", () => {
  it("shadow/ab not promoted: removes the side, re-releases nothing", () => {
    const plan = planRollback([m("d1", { sideAssigned: true }), m("d2", { sideAssigned: true })]);
    expect(plan).toEqual([
      { kind: "remove-side", deviceId: "d1" },
      { kind: "remove-side", deviceId: "d2" },
    ]);
  });

  it("a side on a device that had no previous version is removed the same way", () => {
    expect(planRollback([m("d1", { sideAssigned: true, previousSha256: null })])).toEqual([
      { kind: "remove-side", deviceId: "d1" },
    ]);
  });

  it("the rollout's bundle is (or may be) active: today's re-release of the previous bundle", () => {
    expect(planRollback([m("d1"), m("d2", { previousSha256: OTHER })])).toEqual([
      { kind: "re-release", deviceId: "d1", previousSha256: PREV },
      { kind: "re-release", deviceId: "d2", previousSha256: OTHER },
    ]);
  });

  it("no previous version and no side: the model's assignment is removed", () => {
    expect(planRollback([m("d1", { previousSha256: null })])).toEqual([{ kind: "remove-model", deviceId: "d1" }]);
  });

  it("members already handled (abort, or a rollback cut short by a restart) are skipped", () => {
    const plan = planRollback([
      m("d1", { handled: true, sideAssigned: true }),
      m("d2", { handled: true }),
      m("d3", { sideAssigned: true }),
    ]);
    expect(plan).toEqual([
      { kind: "skip", deviceId: "d1" },
      { kind: "skip", deviceId: "d2" },
      { kind: "remove-side", deviceId: "d3" },
    ]);
  });

  it("mixed (a promote cut short): removals first, they need no release signatures", () => {
    const plan = planRollback([
      m("d1"),
      m("d2", { sideAssigned: true }),
      m("d3", { previousSha256: null }),
      m("d4", { handled: true }),
      m("d5", { previousSha256: OTHER }),
    ]);
    expect(plan.map((a) => `${a.kind}:${a.deviceId}`)).toEqual([
      "remove-side:d2",
      "remove-model:d3",
      "skip:d4",
      "re-release:d1",
      "re-release:d5",
    ]);
  });

  it("an empty rollout plans nothing", () => {
    expect(planRollback([])).toEqual([]);
  });
});

describe("memberState (rollout view)", () => {
  const live = { outcome: null, rollbackSha256: null };
  const removed = { outcome: "passed" as const, rollbackSha256: ROLLBACK_REMOVED };

  it("a member whose assignment was removed and that no longer reports the bundle is `removed`, not `pending`", () => {
    expect(memberState("pending", removed)).toBe("removed");
    expect(memberState("pending", { outcome: null, rollbackSha256: ROLLBACK_REMOVED })).toBe("removed");
  });

  it("until the agent drops the side, the device's own state stands", () => {
    expect(memberState("committed", removed)).toBe("committed");
    expect(memberState("downloading", { outcome: null, rollbackSha256: ROLLBACK_REMOVED })).toBe("downloading");
  });

  it("a recorded failure wins over `removed`", () => {
    expect(memberState("pending", { outcome: "failed", rollbackSha256: ROLLBACK_REMOVED })).toBe("failed");
    expect(memberState("reverted", { outcome: "failed", rollbackSha256: ROLLBACK_REMOVED })).toBe("reverted");
  });

  it("members without a removal keep today's states (re-released ones included)", () => {
    expect(memberState("pending", live)).toBe("pending");
    expect(memberState("probation", live)).toBe("probation");
    expect(memberState("committed", { outcome: "failed", rollbackSha256: null })).toBe("failed");
    expect(memberState("pending", { outcome: "passed", rollbackSha256: "c".repeat(64) })).toBe("pending");
  });
});
