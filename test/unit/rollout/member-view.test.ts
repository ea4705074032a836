import { describe, expect, it } from "vitest";
import { observeDevice } from "../../../fleet-server/rollout/observe.js";
import { memberView } from "../../../fleet-server/rollout/view.js";
import type { MemberRow, RolloutRow } from "../../../fleet-server/store/rollout-repo.js";
import { formatRollout, type RolloutDisplay } from "../../../scripts/fleetctl/rollout-commands.js";
import { sha256Hex } from "../../../shared/hash.js";
import { HealthPolicySchema } from "../../../shared/schemas/desired-state.js";
import type { ReportedState } from "../../../shared/schemas/device-state.js";
import { definition, rollout } from "./fixtures.js";

const OLD = sha256Hex("1.0.0");
const NEW = sha256Hex("2.0.0");
const row: RolloutRow = {
  id: "r-1",
  model: "vad",
  version: "2.0.0",
  variant: "fp32",
  bundleSha256: NEW,
  target: { deviceIds: ["late-1"] },
  healthPolicy: HealthPolicySchema.parse({}),
  createdAt: "2025-06-01T00:00:00.000Z",
  definition: definition({ model: "vad", version: "2.0.0", target: { deviceIds: ["late-1"] } }),
  status: "completed",
  state: rollout(definition()).state,
};
const member = (over: Partial<MemberRow> = {}): MemberRow => ({
  deviceId: "late-1",
  desiredSeq: 2,
  assignedAt: "2025-06-01T00:00:01.000Z",
  stage: 0,
  previous: { version: "1.0.0", variant: "fp32", sha256: OLD, releaseCounter: 1 },
  phase: "done",
  phaseSince: "2025-06-01T00:10:00.000Z",
  outcome: "failed",
  outcomeReason: "TIMEOUT",
  acknowledged: true,
  rollbackSha256: null,
  bundleSha256: NEW,
  variant: "fp32",
  variantReason: "explicit",
  ...over,
});
const reported = (committed: { version: string; sha256: string }): ReportedState => ({
  deviceId: "late-1",
  agentVersion: "0.1.0",
  profile: "generic-x64",
  arch: "x64",
  ts: "2025-06-01T00:20:00.000Z",
  lastDesiredSeq: 2,
  models: [
    {
      model: "vad",
      state: "committed",
      committed: { ...committed, variant: "fp32", releaseCounter: 1 },
      candidate: null,
      rolloutId: "r-1",
    },
  ],
});
const view = (m: MemberRow, rep: ReportedState) => {
  const obs = observeDevice({ model: "vad", bundle: NEW, desiredSeq: m.desiredSeq, reported: rep, events: [] });
  return memberView(row, m, { reported: rep, lastSeen: rep.ts }, obs, null);
};

describe("rollout view: the verdict beside what the device runs now (issue 20 §4)", () => {
  it("a device that timed out and committed later keeps its verdict and shows that it runs the new version", () => {
    const v = view(member(), reported({ version: "2.0.0", sha256: NEW }));
    expect(v.state).toBe("failed"); // the one verdict stays
    expect(v.agentState).toBe("committed");
    expect(v.error).toEqual({ code: "TIMEOUT", message: "deadline passed" });
    expect(v.runningNow).toEqual({ version: "2.0.0", variant: "fp32", bundle: NEW, thisRollout: true });
    expect(v.note).toBe(
      "the rollout's verdict is failed (TIMEOUT), but the device committed 2.0.0 (fp32) afterwards and runs it now",
    );
  });

  it("a device that timed out and still runs the old version: what it runs, no note", () => {
    const v = view(member(), reported({ version: "1.0.0", sha256: OLD }));
    expect(v.state).toBe("failed");
    expect(v.runningNow).toEqual({ version: "1.0.0", variant: "fp32", bundle: OLD, thisRollout: false });
    expect(v.note).toBeUndefined();
  });

  it("a device that passed: runs this rollout's version, nothing to explain", () => {
    const v = view(member({ outcome: "passed", outcomeReason: null }), reported({ version: "2.0.0", sha256: NEW }));
    expect(v.state).toBe("committed");
    expect(v.runningNow?.thisRollout).toBe(true);
    expect(v.note).toBeUndefined();
  });

  it("a device that never reported: runningNow null", () => {
    const obs = observeDevice({ model: "vad", bundle: NEW, desiredSeq: 2, reported: null, events: [] });
    expect(memberView(row, member(), { reported: null, lastSeen: null }, obs, null).runningNow).toBeNull();
  });

  it("fleetctl rollouts status prints what the failed device runs and the note", () => {
    const v = view(member(), reported({ version: "2.0.0", sha256: NEW }));
    const s: RolloutDisplay = {
      id: "r-1",
      model: "vad",
      version: "2.0.0",
      variant: "fp32",
      status: "completed",
      createdAt: row.createdAt,
      devices: [v],
      counts: { total: 1, committed: 0, failed: 1, inProgress: 0, pending: 0 },
    };
    const out = formatRollout(s);
    expect(out.at(-2)).toMatch(/^ {2}s1 late-1 +failed +TIMEOUT: deadline passed {2}runs 2\.0\.0 \(fp32\)$/);
    expect(out.at(-1)).toBe(`      note: ${v.note}`);
  });
});
