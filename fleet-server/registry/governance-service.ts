import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import {
  type ApprovalPolicy,
  DEFAULT_MAX_UNAPPROVED_PERCENT,
  type GovernanceView,
  type LifecycleStage,
  type PolicyView,
  type StageCause,
} from "../../shared/http/governance.js";
import type { Logger } from "../../shared/logger.js";
import type { RolloutAction } from "../rollout/planner.js";
import type { DeviceRow } from "../store/device-repo.js";
import type { GovernanceRepo } from "../store/governance-repo.js";
import { approvalsMet, checkTransition, type StagePercents, stagePastCanary, tallyReviews } from "./lifecycle.js";

export interface GovernanceDeps {
  log: Logger;
  clock: Clock;
  repo: GovernanceRepo;
  hasVersion(name: string, version: string): boolean;
  listDevices(): Pick<DeviceRow, "id" | "reported">[];
}

/** A rollout as governance sees it: which version, its stages, and where it stands. */
export interface GovernedRollout {
  model: string;
  version: string;
  definition: StagePercents & { strategy?: string };
  /** The stage the rollout is at (0 for a new one). */
  stage: number;
}

/** Stages past approval: a version there was approved (or predates the policy) and is not held back. */
const PAST_APPROVAL: ReadonlySet<LifecycleStage> = new Set(["approved", "production", "deprecated"]);

/**
 * Lifecycle stages and approvals of model versions (issue 21). The rules are the pure functions
 * of lifecycle.ts; this applies them to the store. Callers: the governance routes, the rollout
 * service (create, resume, promote) and the rollout executor (stage advance, completion).
 */
export function createGovernanceService(deps: GovernanceDeps) {
  const { log, clock, repo } = deps;
  const now = () => new Date(clock.now()).toISOString();

  function requireVersion(name: string, version: string): void {
    if (!deps.hasVersion(name, version))
      throw new EdgeFleetError("NOT_FOUND", `model ${name} version ${version} not found`);
  }

  function policyView(model: string): PolicyView {
    const p = repo.policy(model);
    return p
      ? { model, ...p }
      : {
          model,
          requiredApprovals: 0,
          maxUnapprovedPercent: DEFAULT_MAX_UNAPPROVED_PERCENT,
          updatedAt: null,
          updatedBy: null,
        };
  }

  /** Stage, pusher, tally and whether the version may go past the canary share. */
  function standing(name: string, version: string) {
    const life = repo.lifecycle(name, version) ?? { stage: "candidate" as const, pushedBy: null };
    const policy = policyView(name);
    const reviews = repo.reviews(name, version);
    const tally = tallyReviews(reviews, life.pushedBy);
    const met = approvalsMet(policy.requiredApprovals, tally);
    return { ...life, policy, reviews, tally, met, cleared: met || PAST_APPROVAL.has(life.stage) };
  }

  function view(name: string, version: string): GovernanceView {
    requireVersion(name, version);
    const s = standing(name, version);
    const latest = new Map(s.reviews.map((r, i) => [r.actor, i]));
    return {
      name,
      version,
      stage: s.stage,
      pushedBy: s.pushedBy,
      policy: s.policy,
      approvedBy: s.tally.approvedBy,
      refusedBy: s.tally.refusedBy,
      approved: s.cleared,
      reviews: s.reviews.map((r, i) => ({ ...r, current: latest.get(r.actor) === i && r.actor !== s.pushedBy })),
      history: repo.history(name, version),
    };
  }

  /** Moves the version, or throws STAGE_TRANSITION_INVALID naming what is allowed instead. */
  function move(name: string, version: string, to: LifecycleStage, cause: StageCause, actor: string, comment: string) {
    const s = standing(name, version);
    const verdict = checkTransition(s.stage, to, cause, s.met);
    if (!verdict.ok) {
      throw new EdgeFleetError("STAGE_TRANSITION_INVALID", `${name} ${version}: ${verdict.reason}`, {
        details: { from: s.stage, to, cause, allowed: verdict.allowed },
      });
    }
    repo.setStage(name, version, { from: s.stage, to, cause, actor, comment, at: now() });
    log.info({ model: name, version, from: s.stage, to, cause, actor }, "model version stage changed");
  }

  /**
   * Throws when a rollout of the version may not run from `stage` on: MODEL_VERSION_RETIRED for a
   * retired version, APPROVAL_REQUIRED when a stage from there exceeds the canary share of an
   * unapproved version (the message names the policy and how to meet it).
   */
  function checkRollout(r: GovernedRollout, action: string): void {
    const s = standing(r.model, r.version);
    if (s.stage === "retired") {
      throw new EdgeFleetError(
        "MODEL_VERSION_RETIRED",
        `${r.model} ${r.version} is retired and cannot be rolled out (${action} refused); roll out another version`,
        { details: { model: r.model, version: r.version, stage: s.stage } },
      );
    }
    if (s.cleared) return;
    const past = stagePastCanary(r.definition, s.policy.maxUnapprovedPercent, r.stage);
    if (past === null) return;
    const p = s.policy;
    throw new EdgeFleetError(
      "APPROVAL_REQUIRED",
      `${action} refused: approval policy of model ${r.model} requires ${p.requiredApprovals} approval(s) from distinct operators (not the pusher) before a version goes past ${p.maxUnapprovedPercent}% of a rollout's target; ${r.model} ${r.version} has ${s.tally.approvedBy.length}${s.tally.refusedBy.length > 0 ? ` and is refused by ${s.tally.refusedBy.join(", ")}` : ""}, and stage ${past + 1} asks for ${r.definition.stages[past]!.percent}%`,
      {
        details: {
          policy: {
            model: r.model,
            requiredApprovals: p.requiredApprovals,
            maxUnapprovedPercent: p.maxUnapprovedPercent,
          },
          approvedBy: s.tally.approvedBy,
          refusedBy: s.tally.refusedBy,
          stage: past,
        },
      },
    );
  }

  return {
    view,
    policyView,
    checkRollout,

    /** A version just registered by `actor`: a candidate whose pusher never counts as an approver. */
    recordPush(name: string, version: string, actor: string): void {
      repo.recordPush(name, version, actor, now());
    },

    setStage(name: string, version: string, to: LifecycleStage, actor: string, comment: string): GovernanceView {
      requireVersion(name, version);
      repo.transaction(() => move(name, version, to, "command", actor, comment));
      return view(name, version);
    },

    review(name: string, version: string, actor: string, decision: "approve" | "refuse", comment: string) {
      requireVersion(name, version);
      repo.transaction(() => {
        const s = standing(name, version);
        if (s.pushedBy === actor) {
          throw new EdgeFleetError(
            "FORBIDDEN",
            `${actor} pushed ${name} ${version} and may not review it: approvals come from other operators`,
          );
        }
        if (s.stage !== "candidate") {
          throw new EdgeFleetError(
            "CONFLICT",
            `${name} ${version} is ${s.stage}: reviews are taken while it is a candidate`,
            {
              details: { stage: s.stage },
            },
          );
        }
        repo.addReview(name, version, { actor, decision, comment, at: now() });
        log.info({ model: name, version, actor, decision }, "model version reviewed");
        const after = standing(name, version);
        // Only a policy that asks for approvals turns them into a stage: with none required a
        // candidate stays one until a command or a rollout moves it.
        if (after.policy.requiredApprovals > 0 && after.met) {
          const by = after.tally.approvedBy.join(", ");
          move(name, version, "approved", "approvals", actor, `approved by ${by}`);
        }
      });
      return view(name, version);
    },

    setPolicy(model: string, policy: ApprovalPolicy, actor: string): PolicyView {
      repo.setPolicy(model, { ...policy, updatedAt: now(), updatedBy: actor });
      log.info({ model, ...policy, actor }, "approval policy set");
      return policyView(model);
    },

    /**
     * A running rollout's planned actions, with a stage advance the version may not make (retired,
     * or past the canary share while unapproved) turned into a pause whose reason says why; the
     * operator resumes once it is approved. The planner stays pure and knows nothing of approvals.
     */
    holdAtCanary(r: Omit<GovernedRollout, "stage">, actions: readonly RolloutAction[]): RolloutAction[] {
      return actions.map((a) => {
        if (a.kind !== "advance-stage") return a;
        try {
          checkRollout({ ...r, stage: a.to }, `stage ${a.to + 1}`);
          return a;
        } catch (err) {
          if (err instanceof EdgeFleetError) return { kind: "pause", reason: `${err.code}: ${err.message}` };
          throw err;
        }
      });
    },

    /**
     * A rollout completed: when it reached 100 % of its target with the version active (not a
     * shadow or an A/B side), the version is in production.
     */
    rolloutCompleted(r: GovernedRollout & { servingMode: string; rolloutId: string }): void {
      const last = r.definition.stages[r.definition.stages.length - 1];
      if (!last || last.percent < 100 || r.servingMode !== "active") return;
      const s = standing(r.model, r.version);
      if (s.stage === "production") return;
      try {
        repo.transaction(() =>
          move(r.model, r.version, "production", "rollout", `rollout:${r.rolloutId}`, "completed at 100%"),
        );
      } catch (err) {
        // A rollout never fails over its version's stage; the operator sees the stage unchanged.
        log.warn({ err, model: r.model, version: r.version }, "completed rollout did not move the version's stage");
      }
    },

    /** Devices whose last report runs a deprecated or retired version, active or side. */
    staleDevices(model?: string) {
      const stale = new Map<string, "deprecated" | "retired">();
      for (const v of repo.versionsIn(["deprecated", "retired"])) {
        if (model === undefined || v.name === model) stale.set(`${v.name}\n${v.version}`, v.stage as "deprecated");
      }
      const out: {
        deviceId: string;
        model: string;
        version: string;
        stage: "deprecated" | "retired";
        slot: "active" | "shadow" | "ab";
      }[] = [];
      if (stale.size === 0) return { devices: out };
      for (const d of deps.listDevices()) {
        for (const m of d.reported?.models ?? []) {
          const runs: [string | undefined, "active" | "shadow" | "ab"][] = [
            [m.committed?.version, "active"],
            [m.side?.version, m.side?.mode ?? "shadow"],
          ];
          for (const [version, slot] of runs) {
            const stage = version === undefined ? undefined : stale.get(`${m.model}\n${version}`);
            if (stage) out.push({ deviceId: d.id, model: m.model, version: version!, stage, slot });
          }
        }
      }
      return { devices: out };
    },
  };
}
export type GovernanceService = ReturnType<typeof createGovernanceService>;
