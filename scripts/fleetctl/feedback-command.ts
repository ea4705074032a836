import type { Command } from "commander";
import type { FeedbackSummary } from "../../shared/http/models.js";
import type { ApiClient } from "./api-client.js";

/**
 * `fleetctl models feedback NAME [--tag key=value]...` (issue 22): the ground truth the devices
 * joined to a model's predictions, per version and A/B arm, for the fleet or a cohort, and the
 * bandit splits the devices run (`GET /v1/models/{n}/feedback`).
 */
export function registerFeedbackCommand(
  models: Command,
  deps: { client(cmd: Command): ApiClient; isJson(cmd: Command): boolean },
): void {
  models
    .command("feedback")
    .description("joined ground truth per version and A/B arm, over the fleet or a cohort (--tag)")
    .argument("<name>", "model name")
    .option(
      "--tag <key=value>",
      "only devices with this tag (repeatable)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .action(async (name: string, o: { tag: string[] }, cmd: Command) => {
      const summary = await deps.client(cmd).modelFeedback(name, o.tag);
      if (deps.isJson(cmd)) console.log(JSON.stringify(summary, null, 2));
      else printSummary(summary);
    });
}

export function printSummary(s: FeedbackSummary): void {
  console.log(`${s.model}: ${s.reportingDevices} of ${s.devices} devices report joined feedback`);
  const pct = (x: number | null) => (x === null ? "—" : `${(x * 100).toFixed(1)}%`);
  for (const v of s.versions) {
    const arm = v.arm ? ` (${v.arm})` : "";
    const r = v.regression;
    const reg = r ? `  MAE ${r.mae.toPrecision(4)} RMSE ${r.rmse.toPrecision(4)} over ${r.count} values` : "";
    console.log(
      `  ${v.version}${arm}  accuracy ${pct(v.accuracy)}  ${v.correct}/${v.joined} right${reg}  from ${v.devices} device(s)`,
    );
  }
  if (s.bandit) {
    const b = s.bandit;
    console.log(
      `  bandit: candidate share ${pct(b.meanCandidateShare)} on average (${pct(b.minCandidateShare)}–${pct(b.maxCandidateShare)}) over ${b.devices} device(s); requests ${b.candidateRequests} candidate / ${b.controlRequests} control`,
    );
  }
}
