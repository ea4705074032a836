import { describe, expect, it } from "vitest";
import { ApiError } from "../../../scripts/fleetctl/api-client.js";
import { EXIT, exitForError, exitForRollout } from "../../../scripts/fleetctl/exit-codes.js";
import { ROLLOUT_STATUSES } from "../../../shared/http/rollouts.js";

/** fleetctl's documented exit codes (issue 21, docs/operations.md "fleetctl in a pipeline"). */
describe("fleetctl exit codes", () => {
  it("every rollout status a wait can end on has its code", () => {
    const got = Object.fromEntries(
      ROLLOUT_STATUSES.map((s) => [s, exitForRollout({ status: s, reason: "stage 1 gate" })]),
    );
    expect(got).toEqual({
      running: EXIT.TIMED_OUT,
      paused: EXIT.GATE_FAILED,
      completed: EXIT.OK,
      aborted: EXIT.FAILED,
      "rolling-back": EXIT.ROLLED_BACK,
      "rolled-back": EXIT.ROLLED_BACK,
      superseded: EXIT.FAILED,
    });
    // An operator's pause is not a gate's verdict.
    expect(exitForRollout({ status: "paused", reason: "paused by operator" })).toBe(EXIT.FAILED);
  });

  it("errors: unauthorized and forbidden, timeouts, fleetctl's own, the server's", () => {
    expect(exitForError(new ApiError(401, "UNAUTHORIZED", "x"))).toBe(EXIT.UNAUTHORIZED);
    expect(exitForError(new ApiError(403, "FORBIDDEN", "x"))).toBe(EXIT.UNAUTHORIZED);
    expect(exitForError(new ApiError(0, "TIMEOUT", "x"))).toBe(EXIT.TIMED_OUT);
    expect(exitForError(new ApiError(0, "UNREACHABLE", "x"))).toBe(EXIT.USAGE);
    expect(exitForError(new ApiError(409, "CONFLICT", "x"))).toBe(EXIT.FAILED);
    expect(exitForError(new Error("boom"))).toBe(EXIT.FAILED);
    // The numbers are the documented ones: a pipeline branches on them.
    expect(Object.values(EXIT)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });
});
