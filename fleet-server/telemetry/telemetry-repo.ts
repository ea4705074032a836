import { z } from "zod";
import {
  type DriftFeatureReport,
  DriftFeatureReportSchema,
  type TelemetryBatch,
  type TelemetryRecord,
  TelemetryRecordSchema,
} from "../../shared/schemas/telemetry.js";
import type { Db } from "../store/db.js";
import { decodeJson } from "../store/row-codec.js";
import { dialectOf } from "../store/sql-db.js";

const DriftFeaturesSchema = z.array(DriftFeatureReportSchema);

export interface IngestResult {
  stored: number;
  duplicates: number;
  /** (model, version, cohort) whose latest drift window changed in this batch. */
  driftTouched: { model: string; version: string; cohort: string }[];
  /** New inference records per (model, version, ok), for fleet-level counters. */
  inferences: { model: string; version: string; ok: boolean; latencyMs: number }[];
}

export interface DeviceTelemetryStats {
  highSeq: number;
  stored: number;
  duplicates: number;
  batches: number;
  rejected: number;
  lastRejection: string | null;
  deviceDropped: number;
  lastBatchAt: number | null;
}

export interface RecordQuery {
  kind?: string;
  source?: string;
  afterSeq?: number;
  limit: number;
}

export interface AlertRow {
  id: number;
  ts: number;
  type: string;
  model: string;
  version: string;
  cohort: string;
  feature: string;
  drift: string;
  metric: string;
  value: number;
  threshold: number;
  devices: number;
  samples: number;
}

/**
 * SQL of the telemetry store (migration 3). `ingest` is one transaction: records are inserted
 * with INSERT OR IGNORE on the (device_id, seq) primary key, so a re-sent batch stores nothing
 * twice whatever the interleaving, and the counters move in the same transaction. Columns on the
 * right of an upsert's SET are qualified with their table: PostgreSQL finds a bare name ambiguous
 * between the row and `excluded` (issue 14).
 */
export function createTelemetryRepo(db: Db) {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO telemetry_records
     (device_id, seq, kind, ts, model, version, cohort, ok, latency_ms, non_finite, source, body, received_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const upsertDevice = db.prepare(
    `INSERT INTO telemetry_devices (device_id, high_seq, stored, duplicates, batches, device_dropped, last_batch_at)
     VALUES (@id, @high, @stored, @dups, 1, @dropped, @now)
     ON CONFLICT(device_id) DO UPDATE SET high_seq = MAX(telemetry_devices.high_seq, @high),
       stored = telemetry_devices.stored + @stored, duplicates = telemetry_devices.duplicates + @dups,
       batches = telemetry_devices.batches + 1, device_dropped = MAX(telemetry_devices.device_dropped, @dropped),
       last_batch_at = @now`,
  );
  const upsertDrift = db.prepare(
    `INSERT INTO telemetry_drift_latest (device_id, model, version, cohort, seq, features, ts) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(device_id, model, version) DO UPDATE SET cohort = excluded.cohort, seq = excluded.seq,
       features = excluded.features, ts = excluded.ts WHERE excluded.seq > telemetry_drift_latest.seq`,
  );
  const rejectStmt = db.prepare(
    `INSERT INTO telemetry_devices (device_id, rejected, last_rejection) VALUES (?, 1, ?)
     ON CONFLICT(device_id) DO UPDATE SET rejected = telemetry_devices.rejected + 1, last_rejection = excluded.last_rejection`,
  );
  const cohortStmt = db.prepare(
    `SELECT rd.stage AS stage FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
     WHERE rd.device_id = ? AND r.model = ? AND r.version = ? ORDER BY r.created_at DESC LIMIT 1`,
  );

  // PostgreSQL: the whole batch in one statement (columns as arrays, unnested), returning the seqs
  // it stored — one round trip instead of one per record, which through the synchronous bridge
  // blocked the event loop ~16 ms per 100 records (docs/benchmarks.md "Store engines (issue 14)").
  // SQLite keeps its prepared single-row insert: in-process, a row costs a few µs.
  const insertBatchPg =
    dialectOf(db) === "postgres"
      ? db.prepare(
          `INSERT INTO telemetry_records
           (device_id, seq, kind, ts, model, version, cohort, ok, latency_ms, non_finite, source, body, received_at)
           SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[],
             ?::bigint[], ?::double precision[], ?::bigint[], ?::text[], ?::text[], ?::bigint[])
           ON CONFLICT DO NOTHING RETURNING seq`,
        )
      : null;
  /** Inserts rows (INSERT OR IGNORE); true for each row stored, false for a duplicate. */
  const storeRows = (rows: unknown[][]): boolean[] => {
    if (!insertBatchPg || rows.length === 0) return rows.map((row) => insert.run(...row).changes > 0);
    const columns = rows[0]!.map((_, c) => rows.map((row) => row[c]));
    const seqs = new Set((insertBatchPg.all(...columns) as { seq: number }[]).map((r) => r.seq));
    return rows.map((row) => seqs.has(row[1] as number));
  };

  const ingestTx = db.transaction(
    (deviceId: string, batch: TelemetryBatch, cohortOf: (m: string, v: string) => string, now: number) => {
      const result: IngestResult = { stored: 0, duplicates: 0, driftTouched: [], inferences: [] };
      const cohorts: (string | null)[] = [];
      const rows = batch.records.map((r) => {
        const model = "model" in r ? r.model : null;
        const version = "version" in r ? r.version : null;
        const cohort = model && version ? cohortOf(model, version) : null;
        cohorts.push(cohort);
        const inf = r.kind === "inference" ? r : null;
        return [
          deviceId,
          r.seq,
          r.kind,
          r.ts,
          model,
          version,
          cohort,
          inf ? (inf.ok ? 1 : 0) : null,
          inf ? inf.totalMs : null,
          inf ? inf.nonFinite : null,
          inf ? (inf.probe ? "probe" : inf.source) : null,
          JSON.stringify(r),
          now,
        ];
      });
      const stored = storeRows(rows);
      for (const [i, r] of batch.records.entries()) {
        const cohort = cohorts[i] ?? null;
        const inf = r.kind === "inference" ? r : null;
        if (!stored[i]) {
          result.duplicates += 1;
          continue;
        }
        result.stored += 1;
        if (inf && !inf.probe && inf.source === "api")
          result.inferences.push({ model: inf.model, version: inf.version, ok: inf.ok, latencyMs: inf.totalMs });
        if (r.kind === "drift" && cohort) {
          const moved = upsertDrift.run(
            deviceId,
            r.model,
            r.version,
            cohort,
            r.seq,
            JSON.stringify(r.features),
            r.ts,
          ).changes;
          if (moved > 0) result.driftTouched.push({ model: r.model, version: r.version, cohort });
        }
      }
      upsertDevice.run({
        id: deviceId,
        high: batch.lastSeq,
        stored: result.stored,
        dups: result.duplicates,
        dropped: batch.dropped,
        now,
      });
      return result;
    },
  );

  return {
    ingest: (
      deviceId: string,
      batch: TelemetryBatch,
      cohortOf: (m: string, v: string) => string,
      now: number,
    ): IngestResult => ingestTx(deviceId, batch, cohortOf, now),

    /** The device's stage in the newest rollout of this version, when it is in one. */
    rolloutStage(deviceId: string, model: string, version: string): number | null {
      const row = cohortStmt.get(deviceId, model, version) as { stage: number } | undefined;
      return row ? row.stage : null;
    },

    reject(deviceId: string, reason: string): void {
      rejectStmt.run(deviceId, reason);
    },

    deviceStats(deviceId: string): DeviceTelemetryStats {
      const r = db.prepare("SELECT * FROM telemetry_devices WHERE device_id = ?").get(deviceId) as
        | Record<string, number | string | null>
        | undefined;
      return {
        highSeq: (r?.high_seq as number) ?? 0,
        stored: (r?.stored as number) ?? 0,
        duplicates: (r?.duplicates as number) ?? 0,
        batches: (r?.batches as number) ?? 0,
        rejected: (r?.rejected as number) ?? 0,
        lastRejection: (r?.last_rejection as string | null) ?? null,
        deviceDropped: (r?.device_dropped as number) ?? 0,
        lastBatchAt: (r?.last_batch_at as number | null) ?? null,
      };
    },

    records(deviceId: string, q: RecordQuery): { total: number; records: (TelemetryRecord & { cohort?: string })[] } {
      const where = ["device_id = ?"];
      const args: (string | number)[] = [deviceId];
      if (q.kind) {
        where.push("kind = ?");
        args.push(q.kind);
      }
      if (q.source) {
        where.push("source = ?");
        args.push(q.source);
      }
      const total = (
        db.prepare(`SELECT COUNT(*) AS n FROM telemetry_records WHERE ${where.join(" AND ")}`).get(...args) as {
          n: number;
        }
      ).n;
      if (q.afterSeq !== undefined) {
        where.push("seq > ?");
        args.push(q.afterSeq);
      }
      const rows = db
        .prepare(`SELECT seq, body, cohort FROM telemetry_records WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ?`)
        .all(...args, q.limit) as { seq: number; body: string; cohort: string | null }[];
      // Stored as validated at ingest; decoded again here so a corrupt row is a clear error (issue 23).
      const at = (seq: number) => ({
        table: "telemetry_records",
        key: `device_id=${deviceId}, seq=${seq}`,
        column: "body",
      });
      return {
        total,
        records: rows.map((r) => ({
          ...decodeJson(TelemetryRecordSchema, r.body, at(r.seq)),
          ...(r.cohort ? { cohort: r.cohort } : {}),
        })),
      };
    },

    /** Per cohort: inference counts and latencies of client requests for one model version. */
    inferenceRows(
      model: string,
      version: string,
    ): { cohort: string; deviceId: string; ok: number; latencyMs: number; nonFinite: number }[] {
      return db
        .prepare(
          `SELECT cohort, device_id AS deviceId, ok, latency_ms AS latencyMs, non_finite AS nonFinite FROM telemetry_records
           WHERE model = ? AND version = ? AND kind = 'inference' AND source = 'api'`,
        )
        .all(model, version) as {
        cohort: string;
        deviceId: string;
        ok: number;
        latencyMs: number;
        nonFinite: number;
      }[];
    },

    driftLatest(
      model: string,
      version: string,
      cohort?: string,
    ): { deviceId: string; cohort: string; features: DriftFeatureReport[] }[] {
      const rows = db
        .prepare(
          `SELECT device_id AS deviceId, cohort, features FROM telemetry_drift_latest WHERE model = ? AND version = ?${cohort ? " AND cohort = ?" : ""}`,
        )
        .all(...(cohort ? [model, version, cohort] : [model, version])) as {
        deviceId: string;
        cohort: string;
        features: string;
      }[];
      return rows.map((r) => ({
        deviceId: r.deviceId,
        cohort: r.cohort,
        features: decodeJson(DriftFeaturesSchema, r.features, {
          table: "telemetry_drift_latest",
          key: `model=${model}, version=${version}, device_id=${r.deviceId}`,
          column: "features",
        }),
      }));
    },

    alertState(model: string, version: string, cohort: string, feature: string): boolean {
      const r = db
        .prepare(
          "SELECT alerting FROM telemetry_alert_state WHERE model = ? AND version = ? AND cohort = ? AND feature = ?",
        )
        .get(model, version, cohort, feature) as { alerting: number } | undefined;
      return r?.alerting === 1;
    },

    /** Records the new state and, when it changed, the alert event, in one transaction. */
    saveAlert: db.transaction((a: Omit<AlertRow, "id">, alerting: boolean | null, current: { value: number }) => {
      db.prepare(
        `INSERT INTO telemetry_alert_state (model, version, cohort, feature, drift, alerting, value) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(model, version, cohort, feature) DO UPDATE SET alerting = COALESCE(?, telemetry_alert_state.alerting), value = excluded.value`,
      ).run(
        a.model,
        a.version,
        a.cohort,
        a.feature,
        a.drift,
        alerting ? 1 : 0,
        current.value,
        alerting === null ? null : alerting ? 1 : 0,
      );
      if (alerting === null) return;
      db.prepare(
        `INSERT INTO telemetry_alerts (ts, type, model, version, cohort, feature, drift, metric, value, threshold, devices, samples)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        a.ts,
        a.type,
        a.model,
        a.version,
        a.cohort,
        a.feature,
        a.drift,
        a.metric,
        a.value,
        a.threshold,
        a.devices,
        a.samples,
      );
    }),

    alerts(filter: { model?: string; version?: string }, limit: number): AlertRow[] {
      const where: string[] = [];
      const args: string[] = [];
      if (filter.model) {
        where.push("model = ?");
        args.push(filter.model);
      }
      if (filter.version) {
        where.push("version = ?");
        args.push(filter.version);
      }
      return db
        .prepare(
          `SELECT * FROM telemetry_alerts ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`,
        )
        .all(...args, limit) as AlertRow[];
    },

    /** Retention: drops records received before `before`, then the oldest beyond `maxRows`. */
    trim(maxRows: number, before: number): number {
      let removed = db.prepare("DELETE FROM telemetry_records WHERE received_at < ?").run(before).changes;
      const n = (db.prepare("SELECT COUNT(*) AS n FROM telemetry_records").get() as { n: number }).n;
      if (n > maxRows) {
        removed += db
          .prepare(
            `DELETE FROM telemetry_records WHERE (device_id, seq) IN
             (SELECT device_id, seq FROM telemetry_records ORDER BY received_at LIMIT ?)`,
          )
          .run(n - maxRows).changes;
      }
      return removed;
    },

    count(): number {
      return (db.prepare("SELECT COUNT(*) AS n FROM telemetry_records").get() as { n: number }).n;
    },
  };
}
export type TelemetryRepo = ReturnType<typeof createTelemetryRepo>;
