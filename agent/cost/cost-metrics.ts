import { Gauge, type Registry } from "prom-client";
import type { CostFigures } from "../../shared/schemas/device-state.js";

/**
 * Cost figures on the agent's `/metrics` (issue 22), read from the meter at scrape time: nothing runs
 * between scrapes. Gauges rather than counters: the meter forgets versions past its bound.
 */
export function registerCostMetrics(registry: Registry, snapshot: () => ReadonlyMap<string, CostFigures[]>): void {
  const each = (fn: (labels: { model: string; version: string }, f: CostFigures) => void) => {
    for (const [model, list] of snapshot()) for (const f of list) fn({ model, version: f.version }, f);
  };
  const gauge = (name: string, help: string, value: (f: CostFigures) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["model", "version"],
      registers: [registry],
      collect() {
        this.reset();
        each((l, f) => {
          const v = value(f);
          if (v !== null) this.set(l, v);
        });
      },
    });
  gauge("edgefleet_cost_predictions", "Successful runs of the version since the agent started", (f) => f.predictions);
  gauge(
    "edgefleet_cost_cpu_seconds",
    "Model host CPU attributed to the version's runs since the agent started (all threads)",
    (f) => f.cpuSeconds,
  );
  gauge("edgefleet_cost_rss_mean_bytes", "Time-weighted mean resident memory of the version's host", (f) => f.rssBytes);
  gauge("edgefleet_cost_rss_max_bytes", "Largest sampled resident memory of the version's host", (f) => f.rssMaxBytes);
}
