import { describe, expect, it } from "vitest";
import { sessionOptionsFromProfile } from "../../../agent/runtime/session-options.js";
import { type DeviceProfile, DeviceProfileSchema } from "../../../shared/schemas/device-profile.js";

const profile = (session: Record<string, unknown>): DeviceProfile =>
  DeviceProfileSchema.parse({
    id: "p",
    description: "p",
    match: { arch: ["arm64"] },
    session,
    preferredVariants: ["int8"],
    memoryBudgetMB: 512,
  });

describe("sessionOptionsFromProfile", () => {
  it("maps every session field, with extra config entries as flat string keys", () => {
    const opts = sessionOptionsFromProfile(
      profile({
        intraOpNumThreads: 4,
        interOpNumThreads: 2,
        executionMode: "parallel",
        graphOptimizationLevel: "extended",
        enableCpuMemArena: false,
        enableMemPattern: false,
        executionProviders: ["cpu"],
        extra: { "session.intra_op.allow_spinning": "0" },
      }),
    );
    expect(opts).toEqual({
      intraOpNumThreads: 4,
      interOpNumThreads: 2,
      executionMode: "parallel",
      graphOptimizationLevel: "extended",
      enableCpuMemArena: false,
      enableMemPattern: false,
      executionProviders: ["cpu"],
      extra: { "session.intra_op.allow_spinning": "0" },
    });
  });

  it("leaves thread counts of 0 to onnxruntime and applies schema defaults", () => {
    const opts = sessionOptionsFromProfile(profile({ intraOpNumThreads: 0, interOpNumThreads: 0 }));
    expect(opts).toEqual({
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      enableCpuMemArena: true,
      enableMemPattern: true,
      executionProviders: ["cpu"],
      extra: {},
    });
    expect("intraOpNumThreads" in opts).toBe(false);
  });

  it("does not share mutable state with the profile", () => {
    const p = profile({ extra: { a: "1" } });
    const opts = sessionOptionsFromProfile(p);
    opts.extra.b = "2";
    opts.executionProviders.push("xnnpack");
    expect(p.session.extra).toEqual({ a: "1" });
    expect(p.session.executionProviders).toEqual(["cpu"]);
  });
});
