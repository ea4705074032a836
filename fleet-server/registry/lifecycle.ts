import type { LifecycleStage, StageCause } from "../../shared/http/governance.js";

/**
 * Model version lifecycle (issue 21), pure: which stage changes are legal and who may make them,
 * and what the approval policy lets an unapproved version reach. No I/O; the governance service
 * (governance-service.ts) applies the answers, tests/unit/registry/lifecycle.test.ts reads them.
 */

/**
 * From → to → the causes allowed to make the move. Anything absent is illegal.
 * - `approved` only through approvals, or by command when the policy requires none (otherwise a
 *   command would be a way around the approvals).
 * - `production` by a completed 100 % rollout, or by command (a version that reached every device
 *   another way); a deprecated version that is rolled out to completion again is production again.
 * - `production → retired` goes through `deprecated`: retiring something that may be running
 *   everywhere must be a visible second step (see the stale-devices route in between).
 * - `retired` is final: a retired version cannot be rolled out, so nothing could move it on.
 */
export const TRANSITIONS: Readonly<Record<LifecycleStage, Partial<Record<LifecycleStage, readonly StageCause[]>>>> = {
  candidate: {
    approved: ["approvals", "command"],
    production: ["rollout", "command"],
    deprecated: ["command"],
    retired: ["command"],
  },
  approved: {
    production: ["rollout", "command"],
    deprecated: ["command"],
    retired: ["command"],
  },
  production: {
    deprecated: ["command"],
  },
  deprecated: {
    production: ["rollout", "command"],
    retired: ["command"],
  },
  retired: {},
};

export type TransitionVerdict = { ok: true } | { ok: false; reason: string; allowed: LifecycleStage[] };

/**
 * Whether `from → to` by `cause` is legal. `approvalsMet`: the version's approval policy is
 * satisfied (or requires nothing); a command may mark a version approved only then, and a command
 * may not put an unapproved version into production past the policy either.
 */
export function checkTransition(
  from: LifecycleStage,
  to: LifecycleStage,
  cause: StageCause,
  approvalsMet: boolean,
): TransitionVerdict {
  const row = TRANSITIONS[from];
  const allowed = (Object.keys(row) as LifecycleStage[]).filter((s) => row[s]?.includes(cause));
  if (from === to) return { ok: false, reason: `the version is already ${to}`, allowed };
  const causes = row[to];
  if (!causes) {
    const next = Object.keys(row);
    return {
      ok: false,
      reason:
        next.length === 0
          ? `${from} is final: nothing moves a ${from} version`
          : `${from} → ${to} is not a lifecycle transition (from ${from}: ${next.join(", ")})`,
      allowed,
    };
  }
  if (!causes.includes(cause)) {
    return { ok: false, reason: `${from} → ${to} happens only by ${causes.join(" or ")}, not by ${cause}`, allowed };
  }
  if (cause === "command" && (to === "approved" || to === "production") && !approvalsMet) {
    return {
      ok: false,
      reason: `${from} → ${to} by command needs the approval policy met first (approve the version)`,
      allowed: allowed.filter((s) => s !== "approved" && s !== "production"),
    };
  }
  return { ok: true };
}

/** Stages of a rollout, as far as the canary share cares: each stage's percent of the target. */
export interface StagePercents {
  stages: readonly { percent: number }[];
}

/**
 * The first stage (0-based) whose percent exceeds what the approval policy lets an unapproved
 * version reach, from `fromStage` on; null when none does. The share is a percent of the
 * rollout's target, the same unit the stages use.
 */
export function stagePastCanary(def: StagePercents, maxUnapprovedPercent: number, fromStage = 0): number | null {
  for (let i = fromStage; i < def.stages.length; i++) {
    if (def.stages[i]!.percent > maxUnapprovedPercent + 1e-9) return i;
  }
  return null;
}

/** Reviews in time order → who currently approves and who refuses (each actor's latest review counts). */
export function tallyReviews(
  reviews: readonly { actor: string; decision: "approve" | "refuse" }[],
  pushedBy: string | null,
): { approvedBy: string[]; refusedBy: string[] } {
  const latest = new Map<string, "approve" | "refuse">();
  for (const r of reviews) {
    // Never the pusher: refused at the door too, this is the second lock.
    if (r.actor === pushedBy) continue;
    latest.delete(r.actor); // re-inserted last: the order of the lists is the order of latest reviews
    latest.set(r.actor, r.decision);
  }
  const approvedBy = [...latest].filter(([, d]) => d === "approve").map(([a]) => a);
  const refusedBy = [...latest].filter(([, d]) => d === "refuse").map(([a]) => a);
  return { approvedBy, refusedBy };
}

/** The policy is met: enough distinct approvers and no standing refusal (0 required: always met). */
export function approvalsMet(required: number, tally: { approvedBy: string[]; refusedBy: string[] }): boolean {
  if (required === 0) return true;
  return tally.refusedBy.length === 0 && tally.approvedBy.length >= required;
}
