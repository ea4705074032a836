import { describe, expect, it } from "vitest";
import { countStates, deviceRolloutStatus, rolloutStatus } from "../../../fleet-server/rollout/status.js";
import type { DeviceEvent, ReportedModel, ReportedState } from "../../../shared/schemas/device-state.js";

const B = "b".repeat(64);
const OLD = "a".repeat(64);
const ref = (sha256: string) => ({ version: "1.0.0", variant: "fp32" as const, sha256, releaseCounter: 1 });

function reported(model: Partial<ReportedModel>): ReportedState {
  return {
    deviceId: "d",
    agentVersion: "0.1.0",
    profile: "p",
    arch: "x64",
    ts: "2025-01-01T00:00:00Z",
    lastDesiredSeq: 1,
    models: [{ model: "m", state: "idle", committed: null, candidate: null, rolloutId: null, ...model }],
  };
}
const status = (rep: ReportedState | null, events: DeviceEvent[] = []) =>
  deviceRolloutStatus({ model: "m", bundle: B, desiredSeq: 3, reported: rep, events });

describe("deviceRolloutStatus", () => {
  it("is pending without a report, or with a report about something else", () => {
    expect(status(null).state).toBe("pending");
    expect(status(reported({ state: "committed", committed: ref(OLD) })).state).toBe("pending");
  });
  it("follows the candidate through the update states, with progress", () => {
    const s = status(reported({ state: "downloading", candidate: ref(B), progress: { bytes: 10, total: 100 } }));
    expect(s).toEqual({ state: "downloading", progress: { bytes: 10, total: 100 } });
    expect(status(reported({ state: "probation", committed: ref(OLD), candidate: ref(B) })).state).toBe("probation");
  });
  it("is committed when the committed bundle is the rollout's", () => {
    expect(status(reported({ state: "committed", committed: ref(B) })).state).toBe("committed");
  });
  it("is failed when the candidate failed or reverted, carrying the error", () => {
    const error = { code: "SMOKE_TEST_FAILED", message: "outputs differ" };
    expect(status(reported({ state: "reverted", committed: ref(OLD), candidate: ref(B), error }))).toEqual({
      state: "failed",
      error,
    });
  });
  it("is failed from events: a failure for this bundle or a rejection of this desired state", () => {
    const base = { deviceId: "d", ts: "2025-01-01T00:00:00Z", eventSeq: 1 };
    const failed: DeviceEvent = {
      ...base,
      type: "update.transition",
      model: "m",
      bundle: B,
      rolloutId: "r",
      from: "verifying",
      to: "failed",
      error: { code: "BUNDLE_HASH_MISMATCH", message: "x" },
    };
    expect(status(reported({ state: "idle", committed: ref(OLD) }), [failed]).error?.code).toBe("BUNDLE_HASH_MISMATCH");
    const otherBundle = { ...failed, bundle: OLD };
    expect(status(null, [otherBundle]).state).toBe("pending");
    const rejected: DeviceEvent = {
      ...base,
      type: "desired.rejected",
      seq: 3,
      error: { code: "EXPIRED", message: "old" },
    };
    expect(status(null, [rejected]).state).toBe("failed");
    expect(status(null, [{ ...rejected, seq: 2 }]).state).toBe("pending");
    const replayed: DeviceEvent = { ...rejected, error: { code: "SEQ_REPLAYED", message: "seen" } };
    expect(status(null, [replayed]).state).toBe("pending");
  });
});

describe("rolloutStatus", () => {
  it("completes when all committed, fails when all terminal with a failure, else runs", () => {
    expect(rolloutStatus(countStates(["committed", "committed"]))).toBe("completed");
    expect(rolloutStatus(countStates(["committed", "failed"]))).toBe("failed");
    expect(rolloutStatus(countStates(["committed", "downloading"]))).toBe("running");
    expect(rolloutStatus(countStates(["failed", "pending"]))).toBe("running");
    expect(countStates(["committed", "failed", "probation", "pending"])).toEqual({
      total: 4,
      committed: 1,
      failed: 1,
      inProgress: 1,
      pending: 1,
    });
  });
});
