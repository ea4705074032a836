import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { InferRecord } from "../runtime/model-runtime.js";

/** Latency buckets in seconds: 100 µs (tiny models on a desktop) to 10 s (big models on a Pi). */
export const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export interface BufferGaugeSource {
  stats(): {
    rows: number;
    bytes: number;
    dropped: number;
    rejected: number;
    pending: number;
    fileBytes: number;
    storage?: "disk" | "memory";
  };
}

export interface DriftGaugeSource {
  gauges(): {
    model: string;
    version: string;
    feature: string;
    drift: "data" | "prediction";
    psi: number;
    ks: number | null;
  }[];
}

export interface AgentMetrics {
  registry: Registry;
  recordInference(r: InferRecord, source: "api" | "internal"): void;
  batchSent(records: number, bytes: number): void;
  acked(rows: number, status: "stored" | "rejected"): void;
  badAck(): void;
  /** Telemetry records lost, by reason (issue 20 §2). */
  dropped(reason: string, records: number): void;
  /** Telemetry records committed while the ring runs in memory (not durable). */
  volatile(records: number): void;
  /** Prometheus text exposition (`GET /metrics` on the socket). */
  text(): Promise<string>;
}

/**
 * The agent's Prometheus metrics (prom-client, one `Registry` per agent, never the global one).
 * Names follow Triton's `nv_inference_*` family with our prefix, labelled by model and version.
 * Request metrics count local clients' requests; what the agent runs itself (warm-up, smoke tests,
 * probation probes) is counted apart, so a restart's warm-up never looks like traffic.
 */
export function createAgentMetrics(sources: { buffer: BufferGaugeSource; drift: DriftGaugeSource }): AgentMetrics {
  const registry = new Registry();
  // prom-client samples event-loop delay with a libuv timer every 10 ms by default: 100 wake-ups a
  // second on an idle device, most of the agent's idle CPU (issue 16). 100 ms still catches every
  // stall that matters to a client (a watchdog ping is 15 s apart) at a tenth of the wake-ups.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  const labelNames = ["model", "version"] as const;
  const success = new Counter({
    name: "edgefleet_inference_request_success_total",
    help: "Inference requests that succeeded",
    labelNames,
    registers: [registry],
  });
  const failure = new Counter({
    name: "edgefleet_inference_request_failure_total",
    help: "Inference requests that failed in the model (client input errors excluded)",
    labelNames: [...labelNames, "reason"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "edgefleet_inference_request_duration_seconds",
    help: "Request time from routing to reply (includes IPC and queueing)",
    labelNames,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const compute = new Histogram({
    name: "edgefleet_inference_compute_infer_duration_seconds",
    help: "Time inside session.run in the model host",
    labelNames,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const nonFinite = new Counter({
    name: "edgefleet_inference_nonfinite_outputs_total",
    help: "NaN or infinite output elements",
    labelNames,
    registers: [registry],
  });
  const probes = new Counter({
    name: "edgefleet_inference_internal_total",
    help: "Inferences the agent ran itself (warm-up, smoke tests, probation probes), not client requests",
    labelNames: [...labelNames, "ok"],
    registers: [registry],
  });
  const batches = new Counter({
    name: "edgefleet_telemetry_batches_sent_total",
    help: "Telemetry batches published (re-sends included)",
    registers: [registry],
  });
  const sentBytes = new Counter({
    name: "edgefleet_telemetry_sent_bytes_total",
    help: "Telemetry batch payload bytes published",
    registers: [registry],
  });
  const sentRecords = new Counter({
    name: "edgefleet_telemetry_sent_records_total",
    help: "Telemetry records published (re-sends included)",
    registers: [registry],
  });
  const ackedRows = new Counter({
    name: "edgefleet_telemetry_acked_rows_total",
    help: "Buffered rows deleted after the server's ack",
    labelNames: ["status"],
    registers: [registry],
  });
  const badAcks = new Counter({
    name: "edgefleet_telemetry_bad_acks_total",
    help: "Ack payloads that failed validation",
    registers: [registry],
  });
  // Issue 20 §2: every telemetry record lost on the device, by why, in this process's lifetime.
  const droppedTotal = new Counter({
    name: "edgefleet_telemetry_dropped_total",
    help: "Telemetry records lost before the server had them (ring_full, oversize, overflow, commit_failed, rejected)",
    labelNames: ["reason"],
    registers: [registry],
  });
  const volatileTotal = new Counter({
    name: "edgefleet_telemetry_volatile_records_total",
    help: "Telemetry records committed while a storage fault kept the ring in memory (lost if the agent dies before they are acked)",
    registers: [registry],
  });
  new Gauge({
    name: "edgefleet_telemetry_buffer_in_memory",
    help: "1 while a storage fault (disk full, read-only, I/O error) keeps the telemetry ring in memory",
    registers: [registry],
    collect() {
      this.set(sources.buffer.stats().storage === "memory" ? 1 : 0);
    },
  });
  new Gauge({
    name: "edgefleet_telemetry_buffer_rows",
    help: "Rows in the telemetry ring buffer",
    registers: [registry],
    collect() {
      this.set(sources.buffer.stats().rows);
    },
  });
  new Gauge({
    name: "edgefleet_telemetry_buffer_bytes",
    help: "Telemetry buffer SQLite files (database + WAL) in bytes",
    registers: [registry],
    collect() {
      this.set(sources.buffer.stats().fileBytes);
    },
  });
  new Gauge({
    name: "edgefleet_telemetry_buffer_pending",
    help: "Records appended but not yet committed",
    registers: [registry],
    collect() {
      this.set(sources.buffer.stats().pending);
    },
  });
  // A gauge, not a counter: the value is the persisted cumulative count, which survives restarts.
  new Gauge({
    name: "edgefleet_telemetry_buffer_dropped_rows",
    help: "Rows dropped before acknowledgement since the buffer was created (ring full, rejected)",
    labelNames: ["reason"],
    registers: [registry],
    collect() {
      const s = sources.buffer.stats();
      this.set({ reason: "ring_full" }, s.dropped);
      this.set({ reason: "rejected" }, s.rejected);
    },
  });
  new Gauge({
    name: "edgefleet_drift_psi",
    help: "Population stability index of the rolling window against the bundle baseline",
    labelNames: ["model", "version", "feature", "drift"],
    registers: [registry],
    collect() {
      this.reset();
      for (const g of sources.drift.gauges()) {
        this.set({ model: g.model, version: g.version, feature: g.feature, drift: g.drift }, g.psi);
      }
    },
  });
  new Gauge({
    name: "edgefleet_drift_ks",
    help: "Binned Kolmogorov-Smirnov statistic of the rolling window (continuous features)",
    labelNames: ["model", "version", "feature", "drift"],
    registers: [registry],
    collect() {
      this.reset();
      for (const g of sources.drift.gauges()) {
        if (g.ks !== null) this.set({ model: g.model, version: g.version, feature: g.feature, drift: g.drift }, g.ks);
      }
    },
  });

  return {
    registry,
    recordInference(r, source) {
      const labels = { model: r.installed.model, version: r.installed.version };
      if (r.probe || source === "internal") {
        probes.inc({ ...labels, ok: String(r.ok) });
        return;
      }
      if (r.ok) success.inc(labels);
      else failure.inc({ ...labels, reason: r.errorCode ?? "INFERENCE_FAILED" });
      duration.observe(labels, r.totalMs / 1000);
      if (r.computeMs !== null) compute.observe(labels, r.computeMs / 1000);
      if (r.nonFinite > 0) nonFinite.inc(labels, r.nonFinite);
    },
    batchSent(records, bytes) {
      batches.inc();
      sentRecords.inc(records);
      sentBytes.inc(bytes);
    },
    acked(rows, status) {
      ackedRows.inc({ status }, rows);
    },
    badAck() {
      badAcks.inc();
    },
    dropped(reason, records) {
      droppedTotal.inc({ reason }, records);
    },
    volatile(records) {
      volatileTotal.inc(records);
    },
    text: () => registry.metrics(),
  };
}
