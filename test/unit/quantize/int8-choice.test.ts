import { describe, expect, it } from "vitest";
import { chooseInt8, type Int8Candidate } from "../../../fleet-server/registry/int8-choice.js";

const c = (
  method: Int8Candidate["method"],
  passed: boolean,
  latencyRatio: number,
  sizeRatio: number,
): Int8Candidate => ({
  method,
  passed,
  latencyRatio,
  sizeRatio,
});

describe("choice between the weight-only and the static int8 build", () => {
  it("prefers a build that passes the policy, however fast the other", () => {
    const r = chooseInt8([c("int8-weights", false, 1.0, 0.27), c("int8-static", true, 1.3, 0.9)])!;
    expect(r.chosen.method).toBe("int8-static");
    expect(r.others[0]!.reason).toBe("failed the accuracy policy");
  });

  it("when neither passes, weight-only, whatever the timing (offline and server agree)", () => {
    const r = chooseInt8([c("int8-static", false, 0.5, 0.2), c("int8-weights", false, 1.4, 0.3)])!;
    expect(r.chosen.method).toBe("int8-weights");
    expect(r.others[0]!.reason).toBe("neither build passed the policy: weight-only is reported");
  });

  it("between two that pass, the faster on the server's CPU", () => {
    const r = chooseInt8([c("int8-weights", true, 1.2, 0.26), c("int8-static", true, 0.7, 0.3)])!;
    expect(r.chosen.method).toBe("int8-static");
    expect(r.others[0]!.reason).toMatch(/^slower on the server's CPU \(1.2 vs 0.7/);
  });

  it("within the timing tie margin, the smaller, then weight-only", () => {
    expect(chooseInt8([c("int8-static", true, 1.0, 0.25), c("int8-weights", true, 1.03, 0.3)])!.chosen.method).toBe(
      "int8-static",
    );
    expect(chooseInt8([c("int8-static", true, 1.0, 0.3), c("int8-weights", true, 1.0, 0.3)])!.chosen.method).toBe(
      "int8-weights",
    );
    expect(chooseInt8([])).toBeNull();
  });
});
