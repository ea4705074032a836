import type { z } from "zod";
import type { DeviceDetailSchema } from "../../../../shared/http/devices.js";
import type { DeviceTelemetrySchema } from "../../../../shared/http/telemetry.js";
import { ApiError, api } from "../api.js";
import type { Page } from "../app-context.js";
import { bucketed, lineChart, quantile, type Series } from "../charts.js";
import { badge, card, clear, el, fmtTime, table } from "../dom.js";

type Detail = z.output<typeof DeviceDetailSchema>;
type Telemetry = z.output<typeof DeviceTelemetrySchema>;
type Rec = Telemetry["records"][number];
type Inference = Extract<Rec, { kind: "inference" }>;
type Drift = Extract<Rec, { kind: "drift" }>;

/** Records of one kind from the device's recent telemetry (the last `window` sequence numbers). */
async function recent(id: string, kind: string, window: number): Promise<Rec[] | null> {
  const base = `/v1/devices/${encodeURIComponent(id)}/telemetry?kind=${kind}`;
  try {
    const head = await api<Telemetry>(`${base}&limit=1`);
    const after = Math.max(0, head.stats.highSeq - window);
    return (await api<Telemetry>(`${base}&afterSeq=${after}&limit=5000`)).records;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** Pure: latency p50/p95 and error rate over time from inference records. */
export function inferenceSeries(records: Inference[]): { latency: Series[]; errors: Series[] } {
  const served = records.filter((r) => !r.probe);
  const pct = (q: number) => (slice: Inference[]) =>
    quantile(
      slice.map((r) => r.totalMs).sort((a, b) => a - b),
      q,
    );
  return {
    latency: [
      { name: "p50 ms", points: bucketed(served, (r) => r.ts, 30, pct(0.5)) },
      { name: "p95 ms", points: bucketed(served, (r) => r.ts, 30, pct(0.95)) },
    ],
    errors: [
      {
        name: "error rate %",
        points: bucketed(
          served,
          (r) => r.ts,
          30,
          (s) => (100 * s.filter((r) => !r.ok).length) / s.length,
        ),
      },
    ],
  };
}

/** Pure: PSI per drift feature (model/feature) over time. */
export function driftSeries(records: Drift[]): Series[] {
  const by = new Map<string, [number, number][]>();
  for (const r of records) {
    for (const f of r.features) {
      const key = `${r.model} ${f.name}`;
      const list = by.get(key) ?? [];
      list.push([r.ts, f.psi]);
      by.set(key, list);
    }
  }
  return [...by.entries()].slice(0, 6).map(([name, points]) => ({ name: `PSI ${name}`, points }));
}

/** Pure: resident memory of the model host from probation reports (events and the reported state). */
export function rssSeries(d: Detail): Series[] {
  const points: [number, number][] = [];
  for (const e of d.events) {
    if (e.type === "probation.verdict" && e.report.candidate.rssBytes !== null) {
      points.push([Date.parse(e.ts), e.report.candidate.rssBytes / (1 << 20)]);
    }
  }
  for (const m of d.reported?.models ?? []) {
    const p = m.probation;
    if (p?.candidate.rssBytes != null)
      points.push([Date.parse(p.endedAt ?? p.startedAt), p.candidate.rssBytes / (1 << 20)]);
  }
  points.sort((a, b) => a[0] - b[0]);
  return [{ name: "model host RSS MiB", points }];
}

export const devicePage: Page = {
  follows: ["device"],
  async render(ctx) {
    const id = ctx.params[0]!;
    const [d, inference, drift] = await Promise.all([
      api<Detail>(`/v1/devices/${encodeURIComponent(id)}`),
      recent(id, "inference", 3000),
      recent(id, "drift", 3000),
    ]);
    clear(ctx.root);
    ctx.root.appendChild(el("p", {}, el("a", { href: "#/devices" }, "← Devices")));
    ctx.root.appendChild(el("h1", { id: "device-id" }, d.id));
    const tags = Object.entries(d.tags).map(([k, v]) => `${k}=${v}`);
    ctx.root.appendChild(
      el(
        "div",
        { class: "grid" },
        card(
          "Device",
          el(
            "dl",
            { class: "kv" },
            el("dt", {}, "Presence"),
            el("dd", {}, badge(d.presence)),
            el("dt", {}, "Profile"),
            el("dd", {}, d.profile ?? "—"),
            el("dt", {}, "Tags"),
            el("dd", { id: "device-tags" }, tags.join(", ") || "—"),
            el("dt", {}, "Last seen"),
            el("dd", {}, fmtTime(d.lastSeen)),
            el("dt", {}, "Enrolled"),
            el("dd", {}, fmtTime(d.createdAt)),
          ),
        ),
      ),
    );
    const models = d.reported?.models ?? [];
    ctx.root.appendChild(
      card(
        "Models (reported state)",
        table(
          ["Model", "State", "Committed", "Candidate", "Probation"],
          models.map((m) => [
            m.model,
            badge(m.state),
            m.committed ? `${m.committed.version} ${m.committed.variant} #${m.committed.releaseCounter}` : "—",
            m.candidate ? `${m.candidate.version} ${m.candidate.variant}` : "—",
            m.probation
              ? el(
                  "span",
                  {},
                  badge(m.probation.verdict),
                  m.probation.reason ? ` ${m.probation.reason}` : "",
                  m.probation.message ? ` — ${m.probation.message}` : "",
                )
              : "—",
          ]),
          d.reported ? "Runs no model yet." : "The device has not reported yet.",
        ),
      ),
    );
    const inf = (inference ?? []).filter((r): r is Inference => r.kind === "inference");
    const s = inferenceSeries(inf);
    const charts = el("div", { class: "grid charts" });
    charts.appendChild(lineChart("Latency p50 / p95", s.latency, (y) => `${y.toFixed(1)} ms`, "latency"));
    charts.appendChild(lineChart("Error rate", s.errors, (y) => `${y.toFixed(y < 10 ? 1 : 0)}%`, "errors"));
    charts.appendChild(
      lineChart(
        "Drift (PSI per feature)",
        driftSeries((drift ?? []).filter((r): r is Drift => r.kind === "drift")),
        (y) => y.toFixed(3),
        "drift",
      ),
    );
    charts.appendChild(lineChart("Model host RSS", rssSeries(d), (y) => `${y.toFixed(0)} MiB`, "rss"));
    ctx.root.appendChild(el("h2", {}, `Telemetry (${inf.length} recent inferences)`));
    ctx.root.appendChild(charts);
    ctx.root.appendChild(
      card(
        "Measurements per variant",
        table(
          ["Model", "Variant", "Version", "p50", "p95", "Requests", "At"],
          d.variantMeasurements.map((v) => [
            v.model,
            v.variant,
            v.version,
            `${v.p50Ms.toFixed(2)} ms`,
            v.p95Ms === null ? "—" : `${v.p95Ms.toFixed(2)} ms`,
            v.requests,
            fmtTime(v.measuredAt),
          ]),
        ),
      ),
    );
    ctx.root.appendChild(
      card(
        "Recent events",
        table(
          ["Time", "Event", "Detail"],
          // Newest first, whatever order the API keeps them in.
          [...d.events]
            .sort((x, y) => y.ts.localeCompare(x.ts) || y.eventSeq - x.eventSeq)
            .slice(0, 50)
            .map((e) => [fmtTime(e.ts), e.type, describeEvent(e)]),
          "No events yet.",
        ),
      ),
    );
  },
};

function describeEvent(e: Detail["events"][number]): string {
  switch (e.type) {
    case "probation.verdict":
      return `${e.model}: ${e.report.verdict}${e.report.reason ? ` (${e.report.reason})` : ""}`;
    case "update.transition":
      return `${e.model ?? "—"}: ${e.from} → ${e.to}${e.error ? ` (${e.error.code})` : ""}`;
    case "storage.fault":
      return `${e.area}: ${e.fault ? e.fault.error.code : "cleared"}`;
    default: {
      const { type: _t, deviceId: _d, ts: _ts, eventSeq: _s, ...rest } = e as Record<string, unknown>;
      return JSON.stringify(rest).slice(0, 300);
    }
  }
}
