import { describe, expect, it } from "vitest";
import {
  BACKGROUND_NICE,
  backgroundPlacement,
  backgroundSessionOptions,
  parseCpuList,
} from "../../../agent/runtime/host-placement.js";
import type { HostSessionOptions } from "../../../agent/runtime/session-options.js";

describe("background host placement (pure)", () => {
  it("parses Linux CPU lists, ranges and singles, sorted and de-duplicated", () => {
    expect(parseCpuList("0-3")).toEqual([0, 1, 2, 3]);
    expect(parseCpuList("0,2-3,8\n")).toEqual([0, 2, 3, 8]);
    expect(parseCpuList("5,1-2,2")).toEqual([1, 2, 5]);
  });

  it("refuses anything that is not a CPU list rather than pinning to a wrong CPU", () => {
    for (const bad of ["", "a", "1-", "3-1", "0-99999", "1;2"]) expect(() => parseCpuList(bad)).toThrow(/CPU list/);
  });

  it("confines a background host to the last allowed CPU, in the idle scheduling class", () => {
    expect(backgroundPlacement([0, 1])).toEqual({ nice: BACKGROUND_NICE, idle: true, cpus: [1] });
    expect(backgroundPlacement([2, 3, 6])).toEqual({ nice: BACKGROUND_NICE, idle: true, cpus: [6] }); // a cpuset
    // One CPU (or unknown): nothing to confine to; still idle-class scheduling.
    expect(backgroundPlacement([0])).toEqual({ nice: BACKGROUND_NICE, idle: true });
    expect(backgroundPlacement([])).toEqual({ nice: BACKGROUND_NICE, idle: true });
  });

  it("keeps the profile's session options but one thread and no spin-waiting", () => {
    const profile: HostSessionOptions = {
      intraOpNumThreads: 4,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      enableCpuMemArena: true,
      enableMemPattern: true,
      executionProviders: ["cpu"],
      extra: { "session.intra_op.allow_spinning": "1", "session.use_env_allocators": "1" },
    };
    expect(backgroundSessionOptions(profile)).toEqual({
      ...profile,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      extra: {
        "session.intra_op.allow_spinning": "0",
        "session.inter_op.allow_spinning": "0",
        "session.use_env_allocators": "1",
      },
    });
    expect(profile.extra["session.intra_op.allow_spinning"]).toBe("1"); // not mutated
  });
});
