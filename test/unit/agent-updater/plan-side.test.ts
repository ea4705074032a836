import { describe, expect, it } from "vitest";
import {
  activeAssignments,
  planSides,
  type SideCurrent,
  type SideMode,
  servingConfigs,
  splitAssignments,
} from "../../../agent/updater/plan-side.js";
import { planUpdate } from "../../../agent/updater/plan-update.js";
import { sha256Hex } from "../../../shared/hash.js";
import { type DesiredState, DesiredStateSchema } from "../../../shared/schemas/desired-state.js";
import type { UpdateState } from "../../../shared/schemas/device-state.js";
import { makeKeys, makeManifest, signedManifest } from "./helpers.js";

const keys = makeKeys();
const manifest = signedManifest(keys, makeManifest());
const SHA_A = sha256Hex("a");
const SHA_B = sha256Hex("b");
const SHA_C = sha256Hex("c");

type Strategy = { mode: "active" } | SideMode;
const assignment = (sha: string, strategy: Strategy, extra: Record<string, unknown> = {}) => ({
  model: "vad",
  bundle: { sha256: sha, size: 10 },
  releaseCounter: 1,
  strategy,
  manifest,
  ...extra,
});
function desired(...assignments: ReturnType<typeof assignment>[]): DesiredState {
  return DesiredStateSchema.parse({
    _type: "desired",
    deviceId: "dev-1",
    seq: 1,
    issuedAt: "2025-06-01T00:00:00Z",
    expires: "2025-06-02T00:00:00Z",
    assignments,
  });
}
const SHADOW: SideMode = { mode: "shadow", sampleRate: 0.5 };
const AB: SideMode = { mode: "ab", weight: 0.5 };
const side = (sha: string, state: UpdateState, loaded = true, strategy: SideMode = SHADOW): SideCurrent => ({
  record: {
    model: "vad",
    strategy,
    ref: { version: "2.0.0", variant: "fp32", sha256: sha, releaseCounter: 2 },
    state,
    error: null,
    rolloutId: "r1",
    since: 0,
  },
  loaded,
});
const committedA = (model: string) => (model === "vad" ? SHA_A : null);

describe("splitAssignments / activeAssignments", () => {
  it("separates a model's active assignment from its side (shadow/ab) one", () => {
    const d = desired(assignment(SHA_A, { mode: "active" }), assignment(SHA_B, SHADOW));
    const slot = splitAssignments(d).get("vad");
    expect(slot?.active?.bundle.sha256).toBe(SHA_A);
    expect(slot?.side?.bundle.sha256).toBe(SHA_B);
    expect(activeAssignments(d).assignments.map((a) => a.bundle.sha256)).toEqual([SHA_A]);
  });
  it("the swap planner never installs a side assignment as the model's version", () => {
    const d = desired(assignment(SHA_A, { mode: "active" }), assignment(SHA_B, AB));
    const current = [{ model: "vad", state: "committed" as const, committed: null, candidate: null }];
    const plan = planUpdate(
      [{ ...current[0]!, committed: { version: "1.0.0", variant: "fp32", sha256: SHA_A, releaseCounter: 1 } }],
      activeAssignments(d),
    );
    expect(plan).toEqual([{ kind: "noop", model: "vad", reason: "already-committed" }]);
  });
});

describe("planSides", () => {
  const withShadow = desired(assignment(SHA_A, { mode: "active" }), assignment(SHA_B, SHADOW));
  it("installs a new side candidate beside the committed version", () => {
    expect(planSides([], withShadow, committedA)).toMatchObject([
      { kind: "install-side", model: "vad", strategy: SHADOW, assignment: { bundle: { sha256: SHA_B } } },
    ]);
  });
  it("waits for an active version to run beside", () => {
    expect(planSides([], withShadow, () => null)).toEqual([
      { kind: "noop", model: "vad", reason: "no-active-version" },
    ]);
  });
  it("leaves a running side alone, and only changes the strategy when its figures change", () => {
    expect(planSides([side(SHA_B, "committed")], withShadow, committedA)).toEqual([
      { kind: "noop", model: "vad", reason: "already-running" },
    ]);
    const faster = desired(assignment(SHA_A, { mode: "active" }), assignment(SHA_B, { mode: "shadow", sampleRate: 1 }));
    expect(planSides([side(SHA_B, "committed")], faster, committedA)).toEqual([
      { kind: "set-strategy", model: "vad", strategy: { mode: "shadow", sampleRate: 1 } },
    ]);
  });
  it("re-installs a side interrupted by a restart or not loaded any more, never a failed one", () => {
    expect(planSides([side(SHA_B, "downloading", false)], withShadow, committedA)[0]).toMatchObject({
      kind: "install-side",
    });
    expect(planSides([side(SHA_B, "committed", false)], withShadow, committedA)[0]).toMatchObject({
      kind: "install-side",
    });
    expect(planSides([side(SHA_B, "failed", false)], withShadow, committedA)).toEqual([
      { kind: "noop", model: "vad", reason: "already-failed" },
    ]);
  });
  it("re-installs a side that failed for the device's disk (issue 20 §2)", () => {
    for (const code of ["DISK_FULL", "STORAGE_READ_ONLY", "STORAGE_FAILED"] as const) {
      const stopped = side(SHA_B, "failed", false);
      stopped.record.error = { code, message: "no space" };
      expect(planSides([stopped], withShadow, committedA)[0], code).toMatchObject({ kind: "install-side" });
    }
  });
  it("removes a side the desired state dropped (abort / rollback)", () => {
    const rollback = desired(assignment(SHA_C, { mode: "active" }));
    expect(planSides([side(SHA_B, "committed")], rollback, committedA)).toEqual([
      { kind: "remove-side", model: "vad", sha256: SHA_B, promoted: false },
    ]);
  });
  it("marks a side whose bundle became the active assignment as promoted", () => {
    const promoted = desired(assignment(SHA_B, { mode: "active" }));
    expect(planSides([side(SHA_B, "committed")], promoted, committedA)).toEqual([
      { kind: "remove-side", model: "vad", sha256: SHA_B, promoted: true },
    ]);
  });
  it("replaces a side by another bundle: the old one goes first", () => {
    const next = desired(assignment(SHA_A, { mode: "active" }), assignment(SHA_C, AB));
    expect(planSides([side(SHA_B, "committed")], next, committedA)).toMatchObject([
      { kind: "remove-side", sha256: SHA_B, promoted: false },
      { kind: "install-side", strategy: AB, assignment: { bundle: { sha256: SHA_C } } },
    ]);
  });
  it("does nothing for a side bundle that is already the committed version", () => {
    expect(planSides([], withShadow, () => SHA_B)).toEqual([{ kind: "noop", model: "vad", reason: "is-active" }]);
  });
});

describe("servingConfigs", () => {
  it("takes the active assignment's options, else the side's, with defaults filled in", () => {
    const d = desired(
      assignment(SHA_A, { mode: "active" }, { serving: { cache: { maxEntries: 8 } } }),
      assignment(SHA_B, SHADOW, { serving: { dynamicBatching: {} } }),
    );
    expect(servingConfigs(d).get("vad")).toEqual({ cache: { maxEntries: 8, maxBytes: 16 * 1024 * 1024 } });
    const sideOnly = desired(
      assignment(SHA_A, { mode: "active" }),
      assignment(SHA_B, AB, { serving: { dynamicBatching: {} } }),
    );
    expect(servingConfigs(sideOnly).get("vad")).toEqual({
      dynamicBatching: { maxBatchSize: 8, preferredBatchSizes: [], maxQueueDelayMicros: 500 },
    });
    expect(servingConfigs(desired(assignment(SHA_A, { mode: "active" }))).get("vad")).toBeNull();
  });
});
