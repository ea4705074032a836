import type { z } from "zod";
import type {
  ModelListSchema,
  ModelViewSchema,
  VariantView,
  VersionSamplesSchema,
  VersionView,
} from "../../../../shared/http/models.js";
import type { VersionHealthSchema } from "../../../../shared/http/telemetry.js";
import { api } from "../api.js";
import type { Page } from "../app-context.js";
import { badge, card, clear, el, fmtBytes, fmtTime, table } from "../dom.js";

type ModelList = z.output<typeof ModelListSchema>;
type ModelView = z.output<typeof ModelViewSchema>;
type Health = z.output<typeof VersionHealthSchema>;
type Samples = z.output<typeof VersionSamplesSchema>;

const fmtValue = (v: number | string) => (typeof v === "number" ? Number(v.toPrecision(4)).toString() : v);

/** The newest version's bundled samples: what every device's smoke test runs and expects. */
async function samplesOf(name: string, version: string | undefined): Promise<HTMLElement | null> {
  if (!version) return null;
  const s = await api<Samples>(
    `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/samples`,
  ).catch(() => null);
  if (!s) return null;
  const shape = (t: { name: string; datatype: string; shape: number[] }) =>
    `${t.name} ${t.datatype}[${t.shape.join("×")}]`;
  return el(
    "details",
    { class: "samples" },
    el("summary", {}, `Sample outputs of ${version} (${s.samples.length})`),
    table(
      ["Sample", "Inputs", "fp32 outputs (first values, arg-max)"],
      s.samples.map((x) => [
        x.name,
        x.inputs.map(shape).join(", "),
        x.outputs
          .map(
            (o) =>
              `${shape(o)}: ${o.preview.map(fmtValue).join(", ")}${o.argmax === null ? "" : `; arg-max ${o.argmax}`}`,
          )
          .join(" | "),
      ]),
    ),
  );
}

/** The fleet's telemetry for the newest version: requests, errors, latency, drift alerts. */
async function healthLine(name: string, version: string | undefined): Promise<HTMLElement | null> {
  if (!version) return null;
  const h = await api<Health>(
    `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/health`,
  ).catch(() => null);
  if (!h) return el("p", { class: "muted" }, `No fleet telemetry for ${version} yet.`);
  const t = h.total;
  const pct = t.errorRate === null ? "—" : `${(100 * t.errorRate).toFixed(2)}%`;
  const p95 = t.p95Ms === null ? "—" : `${t.p95Ms.toFixed(1)} ms`;
  const worst = [...h.drift.total.data, ...h.drift.total.prediction].sort((a, b) => b.psi - a.psi)[0];
  return el(
    "p",
    { class: "model-health" },
    `Fleet health of ${version}: ${t.requests} requests on ${t.devices} devices, error rate ${pct}, p95 ${p95}`,
    worst ? `, highest drift PSI ${worst.psi.toFixed(3)} (${worst.name})` : "",
    `, ${h.alerts.length} drift alert${h.alerts.length === 1 ? "" : "s"}.`,
  );
}

/** Where the newest version came from (its signed lineage) and how many samples it was checked on. */
async function lineageOf(name: string, version: string | undefined): Promise<HTMLElement | null> {
  if (!version) return null;
  const v = await api<VersionView>(
    `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`,
  ).catch(() => null);
  if (!v) return null;
  const l = v.lineage;
  const rows: [string, string][] = [];
  if (l.source) rows.push(["source", l.source]);
  if (l.parentVersion) rows.push(["parent version", l.parentVersion]);
  if (l.trainingDataHash) rows.push(["training data", l.trainingDataHash]);
  for (const [k, x] of Object.entries(l.metrics ?? {})) rows.push([`metric ${k}`, String(x)]);
  for (const [k, x] of Object.entries(l.hyperparameters ?? {})) rows.push([`hyperparameter ${k}`, JSON.stringify(x)]);
  rows.push(["samples", `${v.samplesCount} (smoke-test inputs with their fp32 outputs, in every bundle)`]);
  return el(
    "details",
    { class: "lineage" },
    el("summary", {}, `Lineage of ${version}`),
    el("dl", { class: "kv" }, ...rows.flatMap(([k, x]) => [el("dt", {}, k), el("dd", {}, x)])),
  );
}

function accuracy(v: VariantView): string {
  const r = v.validation;
  if (!r) return v.variant === "fp32" ? "reference" : (v.reason ?? "—");
  const top1 = r.top1Agreement === null ? "" : `, top-1 agreement ${(100 * r.top1Agreement).toFixed(1)}%`;
  const failed = r.failures.length > 0 ? `: ${r.failures.join("; ")}` : "";
  return `${r.passed ? "passed" : "failed"} on ${r.samples} samples${top1}, size ×${r.sizeRatio.toFixed(2)}${failed}`;
}

/** Every model with its versions and variants: bundle size, publication, int8 accuracy report. */
export const modelsPage: Page = {
  follows: [],
  async render({ root }) {
    const { models } = await api<ModelList>("/v1/models");
    const views = await Promise.all(models.map((m) => api<ModelView>(`/v1/models/${encodeURIComponent(m.name)}`)));
    const health = await Promise.all(models.map((m) => healthLine(m.name, m.latestVersion)));
    const lineage = await Promise.all(models.map((m) => lineageOf(m.name, m.latestVersion)));
    const samples = await Promise.all(models.map((m) => samplesOf(m.name, m.latestVersion)));
    clear(root);
    root.appendChild(el("h1", {}, "Models"));
    if (views.length === 0) {
      root.appendChild(
        el(
          "section",
          { class: "card empty" },
          el("p", {}, "No model is published yet."),
          el("p", {}, el("code", {}, "fleetctl models push model.onnx --name <name> --version 1.0.0")),
        ),
      );
      return;
    }
    for (const [i, m] of views.entries()) {
      root.appendChild(
        card(
          m.name,
          health[i],
          lineage[i],
          samples[i],
          table(
            ["Version", "Created", "Variant", "Bundle", "Status", "Accuracy (int8 vs fp32)"],
            m.versions.flatMap((v) =>
              v.variants.map((x) => [
                v.version,
                el("span", { class: "hide-narrow" }, fmtTime(v.createdAt)),
                x.variant,
                x.bundle ? fmtBytes(x.bundle.size) : "—",
                badge(x.published ? "published" : x.pendingSignature ? "pending signature" : "not published"),
                accuracy(x),
              ]),
            ),
          ),
        ),
      );
    }
  },
};
