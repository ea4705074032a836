import type { Db } from "./db.js";

/** The latest usable measurement of one variant of one model on one device. */
export interface VariantMeasurementRow {
  deviceId: string;
  model: string;
  variant: string;
  version: string;
  sha256: string;
  p50Ms: number;
  p95Ms: number | null;
  requests: number;
  measuredAt: string;
}

interface RawMeasurement {
  device_id: string;
  model: string;
  variant: string;
  version: string;
  sha256: string;
  p50_ms: number;
  p95_ms: number | null;
  requests: number;
  measured_at: string;
}

const toRow = (r: RawMeasurement): VariantMeasurementRow => ({
  deviceId: r.device_id,
  model: r.model,
  variant: r.variant,
  version: r.version,
  sha256: r.sha256,
  p50Ms: r.p50_ms,
  p95Ms: r.p95_ms,
  requests: r.requests,
  measuredAt: r.measured_at,
});

export function createVariantMeasurementRepo(db: Db) {
  return {
    get(deviceId: string, model: string, variant: string): VariantMeasurementRow | null {
      const r = db
        .prepare("SELECT * FROM variant_measurements WHERE device_id = ? AND model = ? AND variant = ?")
        .get(deviceId, model, variant) as RawMeasurement | undefined;
      return r ? toRow(r) : null;
    },
    upsert(m: VariantMeasurementRow): void {
      db.prepare(
        `INSERT INTO variant_measurements (device_id, model, variant, version, sha256, p50_ms, p95_ms, requests, measured_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id, model, variant) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256,
           p50_ms = excluded.p50_ms, p95_ms = excluded.p95_ms, requests = excluded.requests,
           measured_at = excluded.measured_at`,
      ).run(m.deviceId, m.model, m.variant, m.version, m.sha256, m.p50Ms, m.p95Ms, m.requests, m.measuredAt);
    },
    /** Every model and variant measured on a device, ordered by model then variant. */
    forDevice(deviceId: string, model?: string): VariantMeasurementRow[] {
      const rows =
        model === undefined
          ? db.prepare("SELECT * FROM variant_measurements WHERE device_id = ? ORDER BY model, variant").all(deviceId)
          : db
              .prepare("SELECT * FROM variant_measurements WHERE device_id = ? AND model = ? ORDER BY variant")
              .all(deviceId, model);
      return (rows as RawMeasurement[]).map(toRow);
    },
  };
}
export type VariantMeasurementRepo = ReturnType<typeof createVariantMeasurementRepo>;
