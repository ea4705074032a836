import { type Command, InvalidArgumentError } from "commander";
import { type GovernanceView, LIFECYCLE_STAGES, type LifecycleStage } from "../../shared/http/governance.js";
import type { ApiClient } from "./api-client.js";

/**
 * `fleetctl models stage|approve|refuse|governance|policy|stale-devices` (issue 21,
 * docs/operations.md "Lifecycle and approvals"): a version's lifecycle stage and the approvals
 * its model's policy asks for, through the typed API client.
 */
export interface GovernanceCommandDeps {
  client(cmd: Command): ApiClient;
  isJson(cmd: Command): boolean;
}

function stageArg(value: string): LifecycleStage {
  if (!(LIFECYCLE_STAGES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`stage must be one of ${LIFECYCLE_STAGES.join(", ")}, got "${value}"`);
  }
  return value as LifecycleStage;
}

function numberArg(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`not a number: "${value}"`);
  return n;
}

/** The human form: stage, policy, who approved or refused. */
function printView(v: GovernanceView): void {
  const p = v.policy;
  console.log(`${v.name}@${v.version}  stage ${v.stage}  pushed by ${v.pushedBy ?? "unknown"}`);
  console.log(
    p.requiredApprovals === 0
      ? "  policy: no approvals required"
      : `  policy: ${p.requiredApprovals} approval(s), unapproved versions at most ${p.maxUnapprovedPercent}% of a rollout`,
  );
  console.log(`  approved by: ${v.approvedBy.join(", ") || "nobody"}${v.approved ? "  (cleared)" : ""}`);
  if (v.refusedBy.length > 0) console.log(`  refused by: ${v.refusedBy.join(", ")}`);
  for (const r of v.reviews.filter((x) => x.current)) console.log(`  ${r.at} ${r.actor} ${r.decision}: ${r.comment}`);
}

export function registerGovernanceCommands(models: Command, deps: GovernanceCommandDeps): void {
  const show = (cmd: Command, v: GovernanceView) =>
    deps.isJson(cmd) ? console.log(JSON.stringify(v, null, 2)) : printView(v);

  models
    .command("governance <name> <version>")
    .description("a version's lifecycle stage, approval policy, reviews and stage history")
    .action(async (name: string, version: string, _o: unknown, cmd: Command) => {
      show(cmd, await deps.client(cmd).versionGovernance(name, version));
    });
  models
    .command("stage <name> <version> <stage>")
    .description(`move a version to a lifecycle stage (${LIFECYCLE_STAGES.join(" → ")})`)
    .option("--comment <text>", "why (kept in the version's stage history)", "")
    .action(async (name: string, version: string, stage: string, o: { comment: string }, cmd: Command) => {
      show(cmd, await deps.client(cmd).setVersionStage(name, version, { stage: stageArg(stage), comment: o.comment }));
    });
  for (const [verb, decision, what] of [
    ["approve", "approve", "approve a version (never your own push); enough distinct approvers make it approved"],
    ["refuse", "refuse", "refuse a version: it stays unapproved until you approve it"],
  ] as const) {
    models
      .command(`${verb} <name> <version>`)
      .description(what)
      .requiredOption("--comment <text>", "the reason, kept with the review")
      .action(async (name: string, version: string, o: { comment: string }, cmd: Command) => {
        show(cmd, await deps.client(cmd).reviewVersion(name, version, decision, o.comment));
      });
  }
  models
    .command("policy <name>")
    .description("show a model's approval policy, or set it (admin) with --required-approvals")
    .option("--required-approvals <n>", "distinct approvers needed (0: none)", numberArg)
    .option("--max-unapproved-percent <p>", "highest stage percent of an unapproved version (default 10)", numberArg)
    .action(async (name: string, o: { requiredApprovals?: number; maxUnapprovedPercent?: number }, cmd: Command) => {
      const api = deps.client(cmd);
      if (o.requiredApprovals === undefined && o.maxUnapprovedPercent !== undefined) {
        throw new InvalidArgumentError("--max-unapproved-percent needs --required-approvals");
      }
      const policy =
        o.requiredApprovals === undefined
          ? await api.approvalPolicy(name)
          : await api.setApprovalPolicy(name, {
              requiredApprovals: o.requiredApprovals,
              ...(o.maxUnapprovedPercent !== undefined ? { maxUnapprovedPercent: o.maxUnapprovedPercent } : {}),
            });
      console.log(JSON.stringify(policy, null, 2));
    });
  models
    .command("stale-devices")
    .description("devices still running a deprecated or retired version")
    .option("--model <name>", "only this model")
    .action(async (o: { model?: string }, cmd: Command) => {
      const { devices } = await deps.client(cmd).staleDevices(o.model);
      if (deps.isJson(cmd)) {
        console.log(JSON.stringify(devices, null, 2));
        return;
      }
      for (const d of devices) console.log(`${d.deviceId}  ${d.model}@${d.version}  ${d.stage}  (${d.slot})`);
    });
}
