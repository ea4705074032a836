import { describe, expect, it } from "vitest";
import {
  approvalsMet,
  checkTransition,
  stagePastCanary,
  TRANSITIONS,
  tallyReviews,
} from "../../../fleet-server/registry/lifecycle.js";
import { LIFECYCLE_STAGES, type LifecycleStage, type StageCause } from "../../../shared/http/governance.js";

const CAUSES: readonly StageCause[] = ["command", "approvals", "rollout"];

describe("lifecycle transitions (issue 21)", () => {
  it("the whole table: every from × to × cause, with approvals met", () => {
    // Written out by hand, so a change to TRANSITIONS must be made twice on purpose.
    const legal = new Set([
      "candidate>approved:approvals",
      "candidate>approved:command",
      "candidate>production:rollout",
      "candidate>production:command",
      "candidate>deprecated:command",
      "candidate>retired:command",
      "approved>production:rollout",
      "approved>production:command",
      "approved>deprecated:command",
      "approved>retired:command",
      "production>deprecated:command",
      "deprecated>production:rollout",
      "deprecated>production:command",
      "deprecated>retired:command",
    ]);
    const seen: string[] = [];
    for (const from of LIFECYCLE_STAGES) {
      for (const to of LIFECYCLE_STAGES) {
        for (const cause of CAUSES) {
          const key = `${from}>${to}:${cause}`;
          const v = checkTransition(from, to, cause, true);
          expect(v.ok, key).toBe(legal.has(key));
          if (v.ok) seen.push(key);
          else expect(v.reason.length, key).toBeGreaterThan(10);
        }
      }
    }
    expect(seen.sort()).toEqual([...legal].sort());
  });

  it("clear refusals: retired is final, production must be deprecated before retiring, causes are named", () => {
    const fromRetired = checkTransition("retired", "production", "rollout", true);
    expect(fromRetired).toMatchObject({ ok: false, allowed: [] });
    expect(!fromRetired.ok && fromRetired.reason).toMatch(/retired is final/);
    const skip = checkTransition("production", "retired", "command", true);
    expect(skip).toMatchObject({ ok: false, allowed: ["deprecated"] });
    expect(!skip.ok && skip.reason).toMatch(/production → retired is not a lifecycle transition/);
    const byRollout = checkTransition("production", "deprecated", "rollout", true);
    expect(!byRollout.ok && byRollout.reason).toMatch(/only by command, not by rollout/);
    const same = checkTransition("approved", "approved", "approvals", true);
    expect(!same.ok && same.reason).toMatch(/already approved/);
  });

  it("a command cannot stand in for missing approvals", () => {
    for (const to of ["approved", "production"] as LifecycleStage[]) {
      const v = checkTransition("candidate", to, "command", false);
      expect(v.ok, to).toBe(false);
      expect(!v.ok && v.reason, to).toMatch(/approval policy met first/);
    }
    // Approvals themselves and rollouts are judged elsewhere (the canary share); retiring needs none.
    expect(checkTransition("candidate", "approved", "approvals", false).ok).toBe(true);
    expect(checkTransition("candidate", "retired", "command", false).ok).toBe(true);
  });

  it("every stage has a row; retired has no way out", () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...LIFECYCLE_STAGES].sort());
    expect(TRANSITIONS.retired).toEqual({});
  });
});

describe("approvals tally and canary share (issue 21)", () => {
  it("distinct actors, latest review each, the pusher never counted", () => {
    const t = tallyReviews(
      [
        { actor: "token:a", decision: "approve" },
        { actor: "token:a", decision: "approve" },
        { actor: "token:pusher", decision: "approve" },
        { actor: "token:b", decision: "refuse" },
        { actor: "token:c", decision: "approve" },
        { actor: "token:b", decision: "approve" },
      ],
      "token:pusher",
    );
    expect(t).toEqual({ approvedBy: ["token:a", "token:c", "token:b"], refusedBy: [] });
    expect(approvalsMet(3, t)).toBe(true);
    expect(approvalsMet(4, t)).toBe(false);
  });

  it("a standing refusal holds the version back; zero required is always met", () => {
    const t = tallyReviews(
      [
        { actor: "token:a", decision: "approve" },
        { actor: "token:b", decision: "approve" },
        { actor: "token:a", decision: "refuse" },
      ],
      null,
    );
    expect(t).toEqual({ approvedBy: ["token:b"], refusedBy: ["token:a"] });
    expect(approvalsMet(1, t)).toBe(false);
    expect(approvalsMet(0, t)).toBe(true);
  });

  it("the first stage past the share, from a given stage on", () => {
    const def = { stages: [{ percent: 5 }, { percent: 10 }, { percent: 50 }, { percent: 100 }] };
    expect(stagePastCanary(def, 10)).toBe(2);
    expect(stagePastCanary(def, 100)).toBeNull();
    expect(stagePastCanary(def, 4)).toBe(0);
    expect(stagePastCanary({ stages: [{ percent: 5 }, { percent: 10 }] }, 10)).toBeNull();
    expect(stagePastCanary(def, 10, 3)).toBe(3);
  });
});
