import type { Db } from "./db.js";

export interface RolloutRow {
  id: string;
  model: string;
  version: string;
  variant: string;
  bundleSha256: string;
  target: unknown;
  healthPolicy: unknown;
  createdAt: string;
}

export interface RolloutDeviceRow {
  deviceId: string;
  desiredSeq: number;
  assignedAt: string;
}

interface RawRollout {
  id: string;
  model: string;
  version: string;
  variant: string;
  bundle_sha256: string;
  target: string;
  health_policy: string;
  created_at: string;
}
const toRow = (r: RawRollout): RolloutRow => ({
  id: r.id,
  model: r.model,
  version: r.version,
  variant: r.variant,
  bundleSha256: r.bundle_sha256,
  target: JSON.parse(r.target),
  healthPolicy: JSON.parse(r.health_policy),
  createdAt: r.created_at,
});

export function createRolloutRepo(db: Db) {
  return {
    insert(r: RolloutRow): void {
      db.prepare(
        "INSERT INTO rollouts (id, model, version, variant, bundle_sha256, target, health_policy, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(
        r.id,
        r.model,
        r.version,
        r.variant,
        r.bundleSha256,
        JSON.stringify(r.target),
        JSON.stringify(r.healthPolicy),
        r.createdAt,
      );
    },
    addDevice(rolloutId: string, d: RolloutDeviceRow): void {
      db.prepare(
        "INSERT INTO rollout_devices (rollout_id, device_id, desired_seq, assigned_at) VALUES (?, ?, ?, ?)",
      ).run(rolloutId, d.deviceId, d.desiredSeq, d.assignedAt);
    },
    get(id: string): RolloutRow | null {
      const r = db.prepare("SELECT * FROM rollouts WHERE id = ?").get(id) as RawRollout | undefined;
      return r ? toRow(r) : null;
    },
    list(): RolloutRow[] {
      return (db.prepare("SELECT * FROM rollouts ORDER BY created_at DESC, id").all() as RawRollout[]).map(toRow);
    },
    devices(rolloutId: string): RolloutDeviceRow[] {
      return (
        db
          .prepare(
            "SELECT device_id, desired_seq, assigned_at FROM rollout_devices WHERE rollout_id = ? ORDER BY device_id",
          )
          .all(rolloutId) as { device_id: string; desired_seq: number; assigned_at: string }[]
      ).map((r) => ({ deviceId: r.device_id, desiredSeq: r.desired_seq, assignedAt: r.assigned_at }));
    },
  };
}
export type RolloutRepo = ReturnType<typeof createRolloutRepo>;
