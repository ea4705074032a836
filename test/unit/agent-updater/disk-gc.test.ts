import { describe, expect, it } from "vitest";
import { bundlesToKeep, planDiskGc } from "../../../agent/updater/disk-gc.js";

const A = "a".repeat(64);
const B = "b".repeat(64);
const C = "c".repeat(64);
const D = "d".repeat(64);

describe("bundlesToKeep (pure)", () => {
  it("keeps committed, candidate, side, loaded and assigned bundles; never an assigned bad one", () => {
    const keep = bundlesToKeep({
      records: [
        { committed: { sha256: A }, candidate: { sha256: B } },
        { committed: null, candidate: null },
      ],
      sides: [C],
      loaded: [A],
      assigned: [D, "f".repeat(64)],
      bad: new Set(["f".repeat(64)]),
    });
    expect([...keep].sort()).toEqual([A, B, C, D]);
  });

  it("a bad bundle that is still committed stays (it serves until something replaces it)", () => {
    const keep = bundlesToKeep({
      records: [{ committed: { sha256: A }, candidate: null }],
      sides: [],
      loaded: [],
      assigned: [A],
      bad: new Set([A]),
    });
    expect(keep.has(A)).toBe(true);
  });
});

describe("planDiskGc (pure)", () => {
  it("removes versions, bundles and partial downloads nothing keeps, foreign files, and every staging entry", () => {
    const plan = planDiskGc(
      {
        modelDirs: [
          { model: "m", sha256: A },
          { model: "m", sha256: B },
          { model: "n", sha256: C },
        ],
        downloads: [`${A}.bundle`, `${B}.bundle`, `${C}.part`, `${D}.part`, "torn.tmp"],
        staging: ["x1", "x2"],
      },
      new Set([A, D]),
    );
    expect(plan.modelDirs).toEqual([
      { model: "m", sha256: B },
      { model: "n", sha256: C },
    ]);
    expect(plan.downloads).toEqual([
      { name: `${B}.bundle`, sha256: B },
      { name: `${C}.part`, sha256: C },
      { name: "torn.tmp", sha256: null },
    ]);
    expect(plan.staging).toEqual(["x1", "x2"]);
  });

  it("an empty device plans nothing", () => {
    expect(planDiskGc({ modelDirs: [], downloads: [], staging: [] }, new Set())).toEqual({
      modelDirs: [],
      downloads: [],
      staging: [],
    });
  });
});
