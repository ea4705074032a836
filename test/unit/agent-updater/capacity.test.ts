import { describe, expect, it } from "vitest";
import { checkCapacity } from "../../../agent/updater/capacity.js";
import type { EdgeFleetError } from "../../../shared/errors.js";

const limits = { memoryBudgetMB: 1000, maxLoadedModels: 2 };

function refusal(fn: () => void): EdgeFleetError | null {
  try {
    fn();
    return null;
  } catch (err) {
    return err as EdgeFleetError;
  }
}

describe("checkCapacity: models side by side within the profile (issue 8)", () => {
  it("accepts a second model that fits both limits", () => {
    expect(refusal(() => checkCapacity("b", 300, [{ model: "a", estimateMB: 300 }], limits))).toBeNull();
  });

  it("refuses a third model when the profile allows two, naming the running ones", () => {
    const err = refusal(() =>
      checkCapacity(
        "c",
        10,
        [
          { model: "a", estimateMB: 10 },
          { model: "b", estimateMB: 10 },
        ],
        limits,
      ),
    );
    expect(err?.code).toBe("INCOMPATIBLE");
    expect(err?.details).toMatchObject({ check: "maxLoadedModels", running: ["a", "b"], maxLoadedModels: 2 });
  });

  it("refuses a model whose estimate beside the others exceeds the memory budget", () => {
    const err = refusal(() => checkCapacity("b", 600, [{ model: "a", estimateMB: 500 }], limits));
    expect(err?.code).toBe("INCOMPATIBLE");
    expect(err?.details).toMatchObject({ check: "memory", estimateMB: 600, inUseMB: 500, memoryBudgetMB: 1000 });
  });

  it("does not count the model's own current version: an update replaces it", () => {
    const installed = [
      { model: "a", estimateMB: 900 },
      { model: "b", estimateMB: 50 },
    ];
    expect(refusal(() => checkCapacity("a", 900, installed, limits))).toBeNull();
  });
});
