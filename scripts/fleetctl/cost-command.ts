import type { Command } from "commander";
import type { ModelCost } from "../../shared/http/cost.js";
import type { ApiClient } from "./api-client.js";
import { formatBytes } from "./progress.js";

type Line = ModelCost["versions"][number];

const num = (x: number | null, digits: number) => (x === null ? "-" : x.toFixed(digits));
const money = (l: Line) => (l.money ? `${l.money.total.toFixed(6)} ${l.money.currency}` : "-");
const moneyPer1k = (l: Line) => (l.money ? num(l.money.per1kPredictions, 6) : "-");

/** Left-aligned columns, widths from the content. Pure. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const COLUMNS = ["devices", "predictions", "cpu s", "cpu s/1k", "rss mean", "bundle bytes", "money", "money/1k"];
const cells = (l: Line) => [
  String(l.devices),
  String(l.predictions),
  num(l.cpuSeconds, 3),
  num(l.cpuSecondsPer1k, 4),
  l.rssBytes === null ? "-" : formatBytes(l.rssBytes),
  formatBytes(l.bundleBytes),
  money(l),
  moneyPer1k(l),
];

/** The human form of `GET /v1/models/{name}/cost`: one table per version, one per rollout. Pure. */
export function formatModelCost(c: ModelCost): string {
  const prices = c.prices
    ? `prices: ${c.prices.cpuHour} ${c.prices.currency}/CPU-hour, ${c.prices.gbTransferred} ${c.prices.currency}/GB`
    : "prices: not configured (fleet-server --prices)";
  const versions = table(
    ["version", ...COLUMNS],
    c.versions.map((l) => [l.version, ...cells(l)]),
  );
  const rollouts =
    c.rollouts.length === 0
      ? "no rollouts"
      : table(
          ["rollout", "version", "status", ...COLUMNS],
          c.rollouts.map((l) => [l.rolloutId, l.version, l.status, ...cells(l)]),
        );
  return `${c.model}  ${prices}\n\n${versions}\n\n${rollouts}`;
}

/** `fleetctl models cost NAME [VERSION]` (issue 22, docs/operations.md "Cost per prediction"). */
export function registerCostCommand(
  models: Command,
  deps: { client: (cmd: Command) => ApiClient; isJson: (cmd: Command) => boolean },
): void {
  models
    .command("cost")
    .description("cost per prediction of a model: CPU-seconds per 1,000 predictions, bundle bytes, money")
    .argument("<name>", "model name")
    .argument("[version]", "only this version")
    .action(async (name: string, version: string | undefined, _o: unknown, cmd: Command) => {
      const cost = await deps.client(cmd).getModelCost(name, version);
      console.log(deps.isJson(cmd) ? JSON.stringify(cost, null, 2) : formatModelCost(cost));
    });
}
