import type { RolloutCommand, RolloutSummary, RolloutView } from "../../../../shared/http/rollouts.js";
import { ApiError, api } from "../api.js";
import { canAct, type Page, type PageContext } from "../app-context.js";
import { badge, card, clear, countRows, el, fmtTime, on, table } from "../dom.js";
import { rolloutProgress } from "./rollout-parts.js";

/** Which commands make sense in a status (the server decides anyway: a refused one shows its 409). */
export function commandsFor(status: string): RolloutCommand[] {
  switch (status) {
    case "running":
      return ["pause", "promote", "abort", "rollback"];
    case "paused":
      return ["resume", "promote", "abort", "rollback"];
    case "completed":
    case "aborted":
      return ["rollback"];
    default:
      return [];
  }
}

export const rolloutsPage: Page = {
  follows: ["rollout"],
  async render({ root }) {
    const { rollouts } = await api<{ rollouts: RolloutSummary[] }>("/v1/rollouts");
    clear(root);
    root.appendChild(el("h1", {}, "Rollouts"));
    root.appendChild(
      table(
        ["Rollout", "Model", "Status", "Stage", "Progress", "Created"],
        [...rollouts]
          .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
          .map((r) => [
            el("a", { href: `#/rollouts/${encodeURIComponent(r.id)}`, "data-rollout": r.id }, r.id),
            `${r.model} ${r.version} (${r.variant})`,
            badge(r.status),
            `${r.stage.number}/${r.stage.of}`,
            rolloutProgress(r.counts),
            el("span", { class: "hide-narrow" }, fmtTime(r.createdAt)),
          ]),
        "No rollout yet: fleetctl rollouts create --model <name> --version <v> --tag ring=canary.",
      ),
    );
  },
};

function confirmDialog(text: string): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = el("button", { type: "button", value: "cancel" }, "Cancel");
    const ok = el("button", { type: "button", class: "danger", value: "confirm", id: "confirm-action" }, "Confirm");
    const dialog = el(
      "dialog",
      { "aria-label": "Confirm" },
      el("p", {}, text),
      el("div", { class: "actions" }, cancel, ok),
    );
    const done = (v: boolean) => {
      dialog.close();
      dialog.remove();
      resolve(v);
    };
    on(cancel, "click", () => done(false));
    on(ok, "click", () => done(true));
    on(dialog, "cancel", () => done(false));
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** The accuracy gate (issue 22): each arm's accuracy and samples, the difference and its lower bound. */
function accuracyRows(a: RolloutView["gates"]["accuracy"], limit: { maxDropPercent?: number } | undefined): string[][] {
  if (!a) return [];
  const acc = (x: { n: number; accuracy: number | null }) =>
    x.accuracy === null ? `— (n=${x.n})` : `${(x.accuracy * 100).toFixed(1)}% (n=${x.n})`;
  const diff =
    a.differencePercent === null ? "—" : `${a.differencePercent.toFixed(2)} (lower ${a.lowerPercent!.toFixed(2)})`;
  return [
    ["Accuracy, candidate / baseline", `${acc(a.candidate)} / ${acc(a.baseline)}`, ""],
    [`Accuracy difference, points: ${a.verdict}`, diff, `min −${limit?.maxDropPercent ?? "—"}`],
  ];
}

function gateRows(r: RolloutView): HTMLElement {
  const g = r.gates;
  const stage = r.stages[r.stage.index];
  const th = (stage?.gates ?? {}) as Record<string, unknown>;
  const limit = (k: string) => (th[k] === undefined ? "—" : String(th[k]));
  const val = (v: number | null, unit = "") => (v === null ? "—" : `${v.toFixed(2)}${unit}`);
  return table(
    ["Gate", "Value", "Threshold"],
    [
      ["Devices with a verdict", String(g.executed), `min ${limit("minDevices")}`],
      ["Failed %", val(g.failedPercent, "%"), `max ${limit("maxFailedPercent")}`],
      ["p95 latency ratio", val(g.p95LatencyRatio), `max ${limit("maxP95LatencyRatio")}`],
      ["Error rate %", val(g.errorRatePercent, "%"), `max ${limit("maxErrorRatePercent")}`],
      ["Shadow agreement %", val(g.shadowAgreementPercent, "%"), `min ${limit("minShadowAgreementPercent")}`],
      ...accuracyRows(g.accuracy, th.accuracy as { maxDropPercent?: number } | undefined),
    ],
  );
}

/** The last command's answer, kept across the redraw that follows it (a redraw builds a new page). */
let lastAnswer: { rollout: string; text: string } | null = null;

async function act(ctx: PageContext, r: RolloutView, cmd: RolloutCommand): Promise<void> {
  if (!(await confirmDialog(`${cmd} rollout ${r.id} (${r.model} ${r.version})?`))) return;
  try {
    await api(`/v1/rollouts/${encodeURIComponent(r.id)}/${cmd}`, { method: "POST" });
    lastAnswer = { rollout: r.id, text: `${cmd}: done` };
  } catch (err) {
    const text = err instanceof ApiError ? `${cmd} refused: ${err.code} ${err.message}` : String(err);
    lastAnswer = { rollout: r.id, text };
  }
  ctx.redraw();
}

export const rolloutPage: Page = {
  follows: ["rollout"],
  async render(ctx) {
    const r = await api<RolloutView>(`/v1/rollouts/${encodeURIComponent(ctx.params[0]!)}`);
    const { root } = ctx;
    clear(root);
    root.appendChild(el("p", {}, el("a", { href: "#/rollouts" }, "← Rollouts")));
    root.appendChild(el("h1", {}, `Rollout ${r.id}: ${r.model} ${r.version}`));
    root.appendChild(
      el(
        "p",
        {},
        el("span", { id: "rollout-status", "data-status": r.status }, badge(r.status)),
        ` ${r.strategy}, stage ${r.stage.number} of ${r.stage.of}`,
        r.reason ? ` — ${r.reason}` : "",
      ),
    );
    const answer = lastAnswer?.rollout === r.id ? lastAnswer.text : "";
    const out = el("p", { class: "muted", id: "action-result", role: "status" }, answer);
    if (canAct(ctx.role)) {
      const buttons = commandsFor(r.status).map((cmd) =>
        on(
          el(
            "button",
            { type: "button", class: cmd === "abort" || cmd === "rollback" ? "danger" : "", "data-action": cmd },
            cmd,
          ),
          "click",
          () => void act(ctx, r, cmd),
        ),
      );
      root.appendChild(el("div", { class: "actions" }, ...buttons));
    }
    root.appendChild(out);
    root.appendChild(el("div", { id: "rollout-progress" }, rolloutProgress(r.counts)));
    const failures = new Map<string, number>();
    for (const d of r.devices)
      if (d.outcome === "failed") failures.set(d.reason ?? "unknown", (failures.get(d.reason ?? "unknown") ?? 0) + 1);
    root.appendChild(
      el(
        "div",
        { class: "grid" },
        card(
          "Stages",
          table(
            ["Stage", "Percent", "Soak", "Devices", "Committed", "Failed"],
            r.stages.map((s) => [
              `${s.index + 1}${s.index === r.stage.index ? " (now)" : ""}`,
              `${s.percent}%`,
              `${s.soakSeconds}s`,
              s.counts.total,
              s.counts.committed,
              s.counts.failed + s.counts.reverted,
            ]),
          ),
        ),
        card(
          "Gates (current stage)",
          gateRows(r),
          r.gates.breached ? el("p", { class: "error" }, r.gates.breached) : null,
        ),
        card("Failures by reason", countRows(failures, r.counts.total)),
      ),
    );
    root.appendChild(
      card(
        "Devices",
        table(
          ["Device", "Stage", "Variant", "State", "Reason", "Running now"],
          r.devices.map((d) => [
            el("a", { href: `#/devices/${encodeURIComponent(d.deviceId)}` }, d.deviceId),
            d.stage + 1,
            d.variant,
            badge(d.state),
            d.reason ?? "—",
            d.runningNow ? `${d.runningNow.version} ${d.runningNow.variant}` : "—",
          ]),
          "No device assigned yet.",
        ),
      ),
    );
    root.appendChild(
      card(
        "Timeline",
        table(
          ["Time", "Event", "Detail"],
          [...r.history].reverse().map((e) => [fmtTime(e.ts), e.type, JSON.stringify(e.detail)]),
        ),
      ),
    );
  },
};
