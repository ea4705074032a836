import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface DriftGaugeRow {
  model: string;
  version: string;
  cohort: string;
  feature: string;
  drift: "data" | "prediction";
  psi: number;
  ks: number | null;
}

export interface ServerMetrics {
  registry: Registry;
  batch(result: "stored" | "duplicate" | "rejected"): void;
  rejected(reason: string): void;
  records(stored: number, duplicates: number): void;
  ingestSeconds(s: number): void;
  fleetInference(model: string, version: string, ok: boolean, latencyMs: number): void;
  alert(type: string, drift: string): void;
  setDrift(rows: DriftGaugeRow[], model: string, version: string, cohort: string): void;
  text(): Promise<string>;
}

/**
 * The fleet server's Prometheus metrics (one `Registry` per server, never prom-client's global
 * one): telemetry ingest counters, fleet-wide inference counters rebuilt from device telemetry
 * (Triton-style names with a `edgefleet_fleet_` prefix so they never collide with an agent's when
 * both are scraped), drift gauges and alerts.
 */
export function createServerMetrics(gauges: { storedRows: () => number }): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const batches = new Counter({
    name: "edgefleet_telemetry_batches_total",
    help: "Telemetry batches received, by result (duplicate = every record already stored)",
    labelNames: ["result"],
    registers: [registry],
  });
  const rejected = new Counter({
    name: "edgefleet_telemetry_batches_rejected_total",
    help: "Telemetry batches rejected, by reason",
    labelNames: ["reason"],
    registers: [registry],
  });
  const records = new Counter({
    name: "edgefleet_telemetry_records_total",
    help: "Telemetry records received, by result",
    labelNames: ["result"],
    registers: [registry],
  });
  const ingest = new Histogram({
    name: "edgefleet_telemetry_ingest_duration_seconds",
    help: "Time to validate and store one batch",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const success = new Counter({
    name: "edgefleet_fleet_inference_request_success_total",
    help: "Client inference requests that succeeded on devices (from telemetry)",
    labelNames: ["model", "version"],
    registers: [registry],
  });
  const failure = new Counter({
    name: "edgefleet_fleet_inference_request_failure_total",
    help: "Client inference requests that failed on devices (from telemetry)",
    labelNames: ["model", "version"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "edgefleet_fleet_inference_request_duration_seconds",
    help: "Device-side request latency (from telemetry)",
    labelNames: ["model", "version"],
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const alerts = new Counter({
    name: "edgefleet_drift_alerts_total",
    help: "Drift alert events (raised, cleared)",
    labelNames: ["type", "drift"],
    registers: [registry],
  });
  const labels = ["model", "version", "cohort", "feature", "drift"] as const;
  const psiGauge = new Gauge({
    name: "edgefleet_fleet_drift_psi",
    help: "PSI of the merged device windows against the baseline, per version and cohort",
    labelNames: labels,
    registers: [registry],
  });
  const ksGauge = new Gauge({
    name: "edgefleet_fleet_drift_ks",
    help: "Binned KS statistic of the merged device windows (continuous features)",
    labelNames: labels,
    registers: [registry],
  });
  new Gauge({
    name: "edgefleet_telemetry_stored_records",
    help: "Telemetry records held (bounded by retention)",
    registers: [registry],
    collect() {
      this.set(gauges.storedRows());
    },
  });

  return {
    registry,
    batch: (r) => batches.inc({ result: r }),
    rejected: (reason) => rejected.inc({ reason }),
    records(stored, duplicates) {
      if (stored > 0) records.inc({ result: "stored" }, stored);
      if (duplicates > 0) records.inc({ result: "duplicate" }, duplicates);
    },
    ingestSeconds: (s) => ingest.observe(s),
    fleetInference(model, version, ok, latencyMs) {
      (ok ? success : failure).inc({ model, version });
      duration.observe({ model, version }, latencyMs / 1000);
    },
    alert: (type, drift) => alerts.inc({ type, drift }),
    setDrift(rows, model, version, cohort) {
      for (const r of rows) {
        const l = { model, version, cohort, feature: r.feature, drift: r.drift };
        psiGauge.set(l, r.psi);
        if (r.ks !== null) ksGauge.set(l, r.ks);
      }
    },
    text: () => registry.metrics(),
  };
}
