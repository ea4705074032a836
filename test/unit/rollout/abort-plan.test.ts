import { describe, expect, it } from "vitest";
import { hasSide, withoutSide } from "../../../fleet-server/rollout/desired-state.js";
import { type AbortMember, planAbort } from "../../../fleet-server/rollout/planner.js";
import type { Assignment } from "../../../shared/schemas/desired-state.js";
import type { SignedManifest } from "../../../shared/schemas/manifest.js";
import { definition, rollout } from "./fixtures.js";

/** `abort` of shadow/ab rollouts takes the side candidate off the devices; active rollouts stop in place. */
const members: AbortMember[] = [
  { deviceId: "d1", sideAssigned: true },
  { deviceId: "d2", sideAssigned: false },
  { deviceId: "d3", sideAssigned: true },
];

describe("planAbort", () => {
  it.each([
    ["shadow", { strategy: "shadow" }],
    ["ab", { strategy: "ab", abWeight: 0.2 }],
  ] as const)("%s: removes the side from every member whose desired state still has it", (mode, def) => {
    const actions = planAbort(rollout(definition(def), { servingMode: mode }), members);
    expect(actions).toEqual([
      { kind: "remove-side", deviceId: "d1" },
      { kind: "remove-side", deviceId: "d3" },
    ]);
  });

  it.each([
    ["canary", { strategy: "canary", stages: [{ percent: 50 }, { percent: 100 }] }],
    ["all-at-once", {}],
  ])("%s: changes nothing on the devices (abort is not a rollback)", (_name, def) => {
    expect(planAbort(rollout(definition(def)), members)).toEqual([]);
  });

  it("a promoted shadow rollout serves the new version as active: abort leaves it", () => {
    const promoted = rollout(definition({ strategy: "shadow" }), { servingMode: "active" });
    expect(planAbort(promoted, members)).toEqual([]);
  });

  it("works the same from paused and completed rollouts", () => {
    const def = definition({ strategy: "shadow" });
    for (const status of ["paused", "completed"] as const) {
      expect(planAbort(rollout(def, { servingMode: "shadow" }, status), members)).toHaveLength(2);
    }
  });
});

describe("withoutSide", () => {
  const manifest = {} as SignedManifest; // never read by these helpers
  const a = (model: string, sha: string, strategy: Assignment["strategy"]): Assignment => ({
    model,
    bundle: { sha256: sha.repeat(64), size: 1 },
    releaseCounter: 1,
    manifest,
    strategy,
  });
  const active = a("vad", "a", { mode: "active" });
  const side = a("vad", "b", { mode: "shadow", sampleRate: 1 });
  const other = a("kws", "c", { mode: "active" });
  const otherSide = a("kws", "b", { mode: "ab", weight: 0.5 });

  it("drops only that model's side with that bundle; the active one and other models stay", () => {
    const next = withoutSide([other, otherSide, active, side], "vad", "b".repeat(64));
    expect(next).toEqual([other, otherSide, active]);
    expect(hasSide(next, "vad", "b".repeat(64))).toBe(false);
  });

  it("never drops an active assignment, even with the same bundle", () => {
    const promoted = a("vad", "b", { mode: "active" });
    expect(withoutSide([promoted], "vad", "b".repeat(64))).toEqual([promoted]);
    expect(hasSide([promoted], "vad", "b".repeat(64))).toBe(false);
  });

  it("hasSide finds a shadow or A/B side of the model", () => {
    expect(hasSide([active, side], "vad", "b".repeat(64))).toBe(true);
    expect(hasSide([otherSide], "kws", "b".repeat(64))).toBe(true);
    expect(hasSide([active, side], "vad", "c".repeat(64))).toBe(false);
  });
});
