import { Gauge, type Registry } from "prom-client";
import type { FeedbackStats } from "./feedback-stats.js";

/**
 * Feedback figures on the agent's `/metrics` (issue 22), read from the statistics at scrape time:
 * nothing runs between scrapes. Labels are model, version and A/B arm ("" outside a split).
 */
export function registerFeedbackMetrics(
  registry: Registry,
  source: { stats: FeedbackStats; driftAlarms(): { model: string; version: string; count: number }[] },
): void {
  const labelNames = ["model", "version", "arm"] as const;
  const each = (
    fn: (labels: Record<(typeof labelNames)[number], string>, s: ReturnType<FeedbackStats["snapshot"]>[number]) => void,
  ) => {
    for (const s of source.stats.snapshot()) fn({ model: s.model, version: s.version, arm: s.arm ?? "" }, s);
  };
  new Gauge({
    name: "edgefleet_feedback_joined",
    help: "Predictions joined to ground truth, by kind (classification, regression, mismatched)",
    labelNames: [...labelNames, "kind"],
    registers: [registry],
    collect() {
      this.reset();
      each((l, s) => {
        this.set({ ...l, kind: "classification" }, s.classification.count);
        this.set({ ...l, kind: "regression" }, s.regression.count);
        this.set({ ...l, kind: "mismatched" }, s.mismatched);
      });
    },
  });
  new Gauge({
    name: "edgefleet_feedback_accuracy",
    help: "Share of joined classification predictions that were right",
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      each((l, s) => {
        if (s.classification.accuracy !== null) this.set(l, s.classification.accuracy);
      });
    },
  });
  new Gauge({
    name: "edgefleet_feedback_mae",
    help: "Mean absolute error of joined regression predictions",
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      each((l, s) => {
        if (s.regression.mae !== null) this.set(l, s.regression.mae);
      });
    },
  });
  new Gauge({
    name: "edgefleet_concept_drift_alarms",
    help: "Concept-drift alarms (Page-Hinkley on the joined error stream) since the agent started",
    labelNames: ["model", "version"],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of source.driftAlarms()) this.set({ model: a.model, version: a.version }, a.count);
    },
  });
}
