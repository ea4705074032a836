import { describe, expect, it } from "vitest";
import {
  formatRollout,
  formatRolloutChange,
  type RolloutDisplay,
  rolloutBodyFromFlags,
} from "../../../scripts/fleetctl/rollout-commands.js";

const counts = (over: Partial<Record<string, number>> = {}) => ({
  total: 0,
  pending: 0,
  downloading: 0,
  installing: 0,
  probation: 0,
  committed: 0,
  failed: 0,
  reverted: 0,
  ...over,
});

describe("fleetctl rollouts", () => {
  it("builds a create body from flags on top of a file", () => {
    const body = rolloutBodyFromFlags(
      {
        version: "2.0.0",
        tag: ["site=lab"],
        stage: [{ percent: 10, soakSeconds: 60 }, { percent: 100 }],
        maxFailedPercent: 5,
        abortAction: "rollback",
        windowCron: "0 2 * * *",
        windowTz: "Europe/Berlin",
      },
      { model: "vad", version: "1.0.0", healthPolicy: { probationSeconds: 30 } },
    );
    expect(body).toEqual({
      model: "vad",
      version: "2.0.0",
      target: { tags: ["site=lab"] },
      stages: [
        { percent: 10, soakSeconds: 60, gates: { maxFailedPercent: 5 } },
        { percent: 100, gates: { maxFailedPercent: 5 } },
      ],
      abort: { action: "rollback" },
      maintenanceWindow: { cron: "0 2 * * *", durationMinutes: 60, timeZone: "Europe/Berlin" },
      healthPolicy: { probationSeconds: 30 },
    });
  });

  it("shows per-stage progress by device state, the gates and the reason", () => {
    const s: RolloutDisplay = {
      id: "r-1",
      model: "vad",
      version: "2.0.0",
      variant: "fp32",
      strategy: "canary",
      status: "paused",
      reason: "stage 1 gate: failed 50% of 2 devices > maxFailedPercent 0",
      createdAt: "2025-01-01T00:00:00Z",
      stage: { index: 0, number: 1, of: 2, percent: 20, soakSeconds: 0, startedAt: "", soakStartedAt: null },
      stages: [
        { index: 0, percent: 20, soakSeconds: 0, counts: counts({ total: 2, committed: 1, failed: 1 }) },
        { index: 1, percent: 100, soakSeconds: 0, counts: counts() },
      ],
      gates: { executed: 2, failed: 1, failedPercent: 50, breached: "failed 50% > 0", waitingFor: null },
      devices: [
        { deviceId: "a", stage: 0, state: "committed" },
        { deviceId: "b", stage: 0, state: "failed", error: { code: "INCOMPATIBLE", message: "arm64 only" } },
      ],
      counts: { total: 2, committed: 1, failed: 1, inProgress: 0, pending: 0 },
    };
    const out = formatRollout(s);
    expect(out[0]).toBe("rollout r-1  vad@2.0.0 (fp32)  canary  paused  stage 1/2 (20%)");
    expect(out[1]).toBe("  reason: stage 1 gate: failed 50% of 2 devices > maxFailedPercent 0");
    expect(out[2]).toMatch(
      /^> stage 1 {2}20% \[#{16}\] 100% pending 0 {2}downloading 0 .* committed 1 {2}failed 1 {2}reverted 0$/,
    );
    expect(out[3]).toMatch(/^ {2}stage 2 100% \[-{16}\]/);
    expect(out).toContain("  gates: executed 2, failed 1 (50.0%) — TRIPPED: failed 50% > 0");
    expect(out.at(-1)).toMatch(/s1 b +failed +INCOMPATIBLE: arm64 only$/);
  });

  it("counts devices whose side was removed (rolled-back shadow rollout) as done, and only then shows them", () => {
    const s: RolloutDisplay = {
      id: "r-2",
      model: "vad",
      version: "2.0.0",
      variant: "fp32",
      strategy: "shadow",
      status: "rolled-back",
      createdAt: "2025-01-01T00:00:00Z",
      stages: [{ index: 0, percent: 100, soakSeconds: 0, counts: { ...counts({ total: 2 }), removed: 2 } }],
      devices: [],
      counts: { total: 2, committed: 0, failed: 0, inProgress: 0, pending: 0 },
    };
    expect(formatRollout(s)[1]).toMatch(/^ {2}stage 1 100% \[#{16}\] 100% pending 0 .* reverted 0 {2}removed 2$/);
  });

  it("--wait off a terminal: one line per change, no redraw codes (issue 23)", () => {
    const at = (over: Partial<RolloutDisplay>): RolloutDisplay => ({
      id: "r-2",
      model: "vad",
      version: "2.0.0",
      variant: "fp32",
      status: "running",
      createdAt: "2025-01-01T00:00:00Z",
      stage: { index: 0, number: 1, of: 2, percent: 50, soakSeconds: 0, startedAt: "", soakStartedAt: null },
      gates: { executed: 0, failed: 0, failedPercent: null, breached: null, waitingFor: "1 executed device" },
      devices: [{ deviceId: "a", state: "downloading" }],
      counts: { total: 2, downloading: 1, pending: 1 },
      ...over,
    });
    const first = formatRolloutChange(at({}));
    expect(first).toBe(
      "rollout r-2 running stage 1/2 (50%) | 2 devices: pending 1, downloading 1 | gates waiting: 1 executed device",
    );
    const paused = formatRolloutChange(
      at({ status: "paused", reason: "gate tripped", counts: { total: 2, failed: 1, committed: 1 }, gates: undefined }),
    );
    expect(paused).toBe("rollout r-2 paused stage 1/2 (50%) | 2 devices: committed 1, failed 1 | reason: gate tripped");
    for (const line of [first, paused]) expect(["\r", "\n", "\u001b"].some((c) => line.includes(c))).toBe(false);
  });
});
