import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { TelemetryAck } from "../../shared/schemas/telemetry.js";
import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";
import { createServerMetrics, type ServerMetrics } from "../metrics/server-metrics.js";
import type { Db } from "../store/db.js";
import { aggregateDrift, alertTransition, type DriftThresholds } from "./drift-alerts.js";
import { checkBatch } from "./ingest-check.js";
import { createTelemetryRepo, type RecordQuery } from "./telemetry-repo.js";
import { versionHealth } from "./version-health.js";

export interface TelemetryIngestDeps {
  log: Logger;
  clock: Clock;
  db: Db;
  topics: Topics;
  transport: Transport;
  /** Built here when absent (the server's one registry, exposed by `metricsText`). */
  metrics?: ServerMetrics;
  /** Telemetry from unknown (or revoked) devices is dropped. */
  knownDevice: (id: string) => boolean;
  thresholds: DriftThresholds;
  retention: { maxRows: number; maxAgeMs: number };
}

/** The cohort a device's records count in: its rollout stage for that version, else "all". */
const cohortName = (stage: number | null) => (stage === null ? "all" : `stage-${stage}`);

/**
 * Server side of telemetry (issue 6): validate → store de-duplicated → ack; drift aggregation
 * and alerts; retention; queries for the HTTP API. Ingest is synchronous from the MQTT handler
 * (better-sqlite3), so batches from one device are stored in arrival order and no two ingests
 * interleave. A bad batch is counted and logged and touches nothing else.
 */
export function createTelemetryIngest(deps: TelemetryIngestDeps) {
  const { log, topics, clock } = deps;
  const repo = createTelemetryRepo(deps.db);
  const metrics = deps.metrics ?? createServerMetrics({ storedRows: () => repo.count() });
  let sinceTrim = 0;

  const ack = (deviceId: string, a: Omit<TelemetryAck, "v" | "deviceId">) => {
    deps.transport
      .publish(topics.device(deviceId, "telemetry/ack"), JSON.stringify({ v: 1, deviceId, ...a }), {
        qos: 1,
        retain: false,
      })
      .catch((err: unknown) => log.debug({ err, deviceId }, "telemetry ack not published"));
  };

  const evaluateDrift = (model: string, version: string, cohort: string) => {
    const rows = repo.driftLatest(model, version, cohort);
    const features = aggregateDrift(rows.map((r) => r.features));
    metrics.setDrift(
      features.map((f) => ({ model, version, cohort, feature: f.name, drift: f.drift, psi: f.psi, ks: f.ks })),
      model,
      version,
      cohort,
    );
    for (const f of features) {
      const alerting = repo.alertState(model, version, cohort, f.name);
      const t = alertTransition(alerting, f, deps.thresholds);
      const base = {
        ts: clock.now(),
        model,
        version,
        cohort,
        feature: f.name,
        drift: f.drift,
        devices: f.devices,
        samples: f.n,
      };
      if (!t) {
        repo.saveAlert({ ...base, type: "", metric: "psi", value: f.psi, threshold: 0 }, null, { value: f.psi });
        continue;
      }
      repo.saveAlert(
        { ...base, type: t.type, metric: t.metric, value: t.value, threshold: t.threshold },
        t.type === "drift.alert.raised",
        {
          value: f.psi,
        },
      );
      metrics.alert(t.type, f.drift);
      log.warn({ ...base, alert: t }, t.type === "drift.alert.raised" ? "drift alert raised" : "drift alert cleared");
    }
  };

  const trim = () => {
    const removed = repo.trim(deps.retention.maxRows, clock.now() - deps.retention.maxAgeMs);
    if (removed > 0) log.info({ removed }, "telemetry retention trimmed records");
  };

  return {
    /** MQTT handler for `fleet/v1/d/+/telemetry`. Never throws. */
    onTelemetry(deviceId: string, payload: Buffer): void {
      const started = performance.now();
      try {
        if (!deps.knownDevice(deviceId)) {
          metrics.rejected("unknown_device");
          return void log.warn({ deviceId }, "telemetry from unknown device; dropped");
        }
        const check = checkBatch(deviceId, payload);
        if (!check.ok) {
          metrics.batch("rejected");
          metrics.rejected(check.reason);
          repo.reject(deviceId, `${check.code}: ${check.message}`);
          log.warn({ deviceId, code: check.code, message: check.message }, "telemetry batch rejected");
          // Told only when the range is known and valid, so the device can drop a poison batch.
          if (check.range && check.reason !== "device_mismatch" && check.range.lastSeq >= check.range.firstSeq) {
            ack(deviceId, {
              ...check.range,
              status: "rejected",
              stored: 0,
              duplicates: 0,
              error: { code: check.code, message: check.message },
            });
          }
          return;
        }
        const b = check.batch;
        const cohorts = new Map<string, string>();
        const cohortOf = (m: string, v: string) => {
          const key = `${m}@${v}`;
          if (!cohorts.has(key)) cohorts.set(key, cohortName(repo.rolloutStage(deviceId, m, v)));
          return cohorts.get(key)!;
        };
        const res = repo.ingest(deviceId, b, cohortOf, clock.now());
        metrics.batch(res.stored === 0 ? "duplicate" : "stored");
        metrics.records(res.stored, res.duplicates);
        for (const i of res.inferences) metrics.fleetInference(i.model, i.version, i.ok, i.latencyMs);
        ack(deviceId, {
          firstSeq: b.firstSeq,
          lastSeq: b.lastSeq,
          status: "stored",
          stored: res.stored,
          duplicates: res.duplicates,
        });
        const touched = new Set(res.driftTouched.map((d) => JSON.stringify([d.model, d.version, d.cohort])));
        for (const k of touched) {
          const [m, v, c] = JSON.parse(k) as [string, string, string];
          evaluateDrift(m, v, c);
        }
        sinceTrim += res.stored;
        if (sinceTrim >= Math.max(1000, deps.retention.maxRows / 10)) {
          sinceTrim = 0;
          trim();
        }
      } catch (err) {
        log.error({ err, deviceId }, "telemetry ingest failed");
      } finally {
        metrics.ingestSeconds((performance.now() - started) / 1000);
      }
    },

    deviceTelemetry(deviceId: string, q: RecordQuery) {
      return { deviceId, stats: repo.deviceStats(deviceId), ...repo.records(deviceId, q) };
    },

    versionHealth(model: string, version: string) {
      const health = versionHealth(repo.inferenceRows(model, version));
      const drift = repo.driftLatest(model, version);
      const cohorts = [...new Set(drift.map((d) => d.cohort))].sort();
      const driftBy = (features: ReturnType<typeof aggregateDrift>) => ({
        data: features.filter((f) => f.drift === "data"),
        prediction: features.filter((f) => f.drift === "prediction"),
      });
      return {
        model,
        version,
        thresholds: deps.thresholds,
        ...health,
        drift: {
          total: driftBy(aggregateDrift(drift.map((d) => d.features))),
          cohorts: cohorts.map((c) => ({
            cohort: c,
            ...driftBy(aggregateDrift(drift.filter((d) => d.cohort === c).map((d) => d.features))),
          })),
        },
        alerts: repo.alerts({ model, version }, 50),
      };
    },

    metrics,
    metricsText: () => metrics.text(),
    alerts: (filter: { model?: string; version?: string }, limit = 100) => repo.alerts(filter, limit),
    trim,
  };
}
export type TelemetryIngest = ReturnType<typeof createTelemetryIngest>;
