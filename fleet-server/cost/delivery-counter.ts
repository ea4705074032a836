import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { Db } from "../store/db.js";

/** How a bundle's bytes left the server. */
export type DeliveryChannel = "http" | "mqtt";

export interface DeliveryRow {
  deviceId: string;
  sha256: string;
  channel: DeliveryChannel;
  version: string;
  bytes: number;
}

export interface DeliveryCounter {
  /** Bytes of `sha256` just sent to `deviceId` ('' for an operator's download). Cheap: counted in memory. */
  add(sha256: string, deviceId: string, channel: DeliveryChannel, bytes: number): void;
  /** Every delivery of a bundle of `model` (bundles built on upload and re-releases), pending counts included. */
  ofModel(model: string): DeliveryRow[];
  /** Writes the pending counts to SQLite (one transaction). */
  flush(): void;
  close(): void;
}

/**
 * Bundle bytes delivered (issue 22, cost per prediction), persisted in `bundle_deliveries`
 * (migration 12). A download sends a chunk many times a second; one UPSERT per chunk would put a
 * SQLite write on the chunk path, so counts gather in memory and are written every `flushMs` (and
 * before every read and at close). A crash loses at most `flushMs` of counts.
 */
export function createDeliveryCounter(deps: { db: Db; clock: Clock; log: Logger; flushMs?: number }): DeliveryCounter {
  const { db, clock, log } = deps;
  const flushMs = deps.flushMs ?? 5_000;
  const pending = new Map<string, { sha256: string; deviceId: string; channel: DeliveryChannel; bytes: number }>();
  const upsert = db.prepare(
    `INSERT INTO bundle_deliveries (sha256, device_id, channel, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (sha256, device_id, channel) DO UPDATE SET bytes = bundle_deliveries.bytes + excluded.bytes, updated_at = excluded.updated_at`,
  );
  const byModel = db.prepare(
    `SELECT d.device_id AS deviceId, d.sha256, d.channel, b.version, d.bytes FROM bundle_deliveries d
     JOIN (SELECT sha256, name, version FROM bundles UNION ALL SELECT sha256, name, version FROM re_releases) b
       ON b.sha256 = d.sha256
     WHERE b.name = ?`,
  );
  let timer: { cancel(): void } | null = null;
  let closed = false;

  const flush = () => {
    timer?.cancel();
    timer = null;
    if (pending.size === 0) return;
    const rows = [...pending.values()];
    pending.clear();
    const now = new Date(clock.now()).toISOString();
    try {
      db.transaction(() => {
        for (const r of rows) upsert.run(r.sha256, r.deviceId, r.channel, r.bytes, now);
      })();
    } catch (err) {
      // Counts are bookkeeping: a failed write must not break a download. Kept for the next flush.
      log.warn({ err }, "bundle delivery counts not written; retrying at the next flush");
      for (const r of rows) addPending(r.sha256, r.deviceId, r.channel, r.bytes);
    }
  };
  function addPending(sha256: string, deviceId: string, channel: DeliveryChannel, bytes: number) {
    const key = `${sha256} ${deviceId} ${channel}`;
    const p = pending.get(key);
    if (p) p.bytes += bytes;
    else pending.set(key, { sha256, deviceId, channel, bytes });
  }

  return {
    add(sha256, deviceId, channel, bytes) {
      if (bytes <= 0 || closed) return;
      addPending(sha256, deviceId, channel, bytes);
      timer ??= clock.setTimeout(flush, flushMs);
    },
    ofModel(model) {
      flush();
      return byModel.all(model) as DeliveryRow[];
    },
    flush,
    close() {
      flush();
      closed = true;
    },
  };
}
