import { z } from "zod";
import { type SignedDesiredState, SignedDesiredStateSchema } from "../../shared/schemas/desired-state.js";
import {
  type DeviceEvent,
  DeviceEventSchema,
  type ReportedState,
  ReportedStateSchema,
} from "../../shared/schemas/device-state.js";
import type { Db } from "./db.js";
import { decodeJson, decodeJsonOrNull, decodeSignedJsonOrNull, decodeValue } from "./row-codec.js";

const TagsSchema = z.record(z.string(), z.string());
const PresenceSchema = z.enum(["online", "offline"]);

export interface DeviceRow {
  id: string;
  passwordHash: string;
  tags: Record<string, string>;
  profile: string | null;
  presence: "online" | "offline";
  /** Last reported state (validated when stored, decoded with `ReportedStateSchema` when read). */
  reported: ReportedState | null;
  lastSeen: string | null;
  desiredSeq: number;
  /** Last signed desired-state envelope published to the device. */
  desired: SignedDesiredState | null;
  createdAt: string;
}

interface RawDevice {
  id: string;
  password_hash: string;
  tags: string;
  profile: string | null;
  presence: string;
  reported: string | null;
  last_seen: string | null;
  desired_seq: number;
  desired: string | null;
  created_at: string;
}

function toRow(r: RawDevice): DeviceRow {
  const at = (column: string) => ({ table: "devices", key: `id=${r.id}`, column });
  return {
    id: r.id,
    passwordHash: r.password_hash,
    tags: decodeJson(TagsSchema, r.tags, at("tags")),
    profile: r.profile,
    presence: decodeValue(PresenceSchema, r.presence, at("presence")),
    reported: decodeJsonOrNull(ReportedStateSchema, r.reported, at("reported")),
    lastSeen: r.last_seen,
    desiredSeq: r.desired_seq,
    desired: decodeSignedJsonOrNull(SignedDesiredStateSchema, r.desired, at("desired")),
    createdAt: r.created_at,
  };
}

export interface StoredEvent {
  eventSeq: number;
  type: string;
  ts: string;
  body: DeviceEvent;
}

export function createDeviceRepo(db: Db) {
  const getStmt = db.prepare("SELECT * FROM devices WHERE id = ?");
  const existsStmt = db.prepare("SELECT 1 FROM devices WHERE id = ?");
  return {
    /** Returns false when the id is taken. */
    insert(d: { id: string; passwordHash: string; tags: Record<string, string>; profile: string | null; now: string }) {
      const res = db
        .prepare("INSERT OR IGNORE INTO devices (id, password_hash, tags, profile, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(d.id, d.passwordHash, JSON.stringify(d.tags), d.profile, d.now);
      return res.changes === 1;
    },
    /** Existence only: no row decoding (bulk enrollment checks thousands of ids). */
    exists(id: string): boolean {
      return existsStmt.get(id) !== undefined;
    },
    transaction<T>(fn: () => T): T {
      return db.transaction(fn)();
    },
    get(id: string): DeviceRow | null {
      const r = getStmt.get(id) as RawDevice | undefined;
      return r ? toRow(r) : null;
    },
    list(): DeviceRow[] {
      return (db.prepare("SELECT * FROM devices ORDER BY id").all() as RawDevice[]).map(toRow);
    },
    setPresence(id: string, presence: "online" | "offline", now: string): void {
      db.prepare("UPDATE devices SET presence = ?, last_seen = ? WHERE id = ?").run(presence, now, id);
    },
    setReported(id: string, reported: ReportedState, now: string): void {
      db.prepare("UPDATE devices SET reported = ?, last_seen = ? WHERE id = ?").run(JSON.stringify(reported), now, id);
    },
    /** Reserves the next desired-state sequence number for a device (monotonic, persisted). */
    nextSeq(id: string): number {
      const row = db
        .prepare("UPDATE devices SET desired_seq = desired_seq + 1 WHERE id = ? RETURNING desired_seq")
        .get(id) as { desired_seq: number } | undefined;
      if (!row) throw new Error(`device ${id} vanished`);
      return row.desired_seq;
    },
    setDesired(id: string, desired: SignedDesiredState): void {
      db.prepare("UPDATE devices SET desired = ? WHERE id = ?").run(JSON.stringify(desired), id);
    },
    /** Stores an event once; a re-delivered (device, eventSeq) is ignored. Returns true when new. */
    insertEvent(deviceId: string, ev: DeviceEvent, now: string): boolean {
      const res = db
        .prepare(
          "INSERT OR IGNORE INTO device_events (device_id, event_seq, type, ts, body, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .run(deviceId, ev.eventSeq, ev.type, ev.ts, JSON.stringify(ev), now);
      return res.changes === 1;
    },
    recentEvents(deviceId: string, limit: number): StoredEvent[] {
      const rows = db
        .prepare(
          "SELECT event_seq, type, ts, body FROM device_events WHERE device_id = ? ORDER BY event_seq DESC LIMIT ?",
        )
        .all(deviceId, limit) as { event_seq: number; type: string; ts: string; body: string }[];
      return rows.map((r) => ({
        eventSeq: r.event_seq,
        type: r.type,
        ts: r.ts,
        body: decodeJson(DeviceEventSchema, r.body, {
          table: "device_events",
          key: `device_id=${deviceId}, event_seq=${r.event_seq}`,
          column: "body",
        }),
      }));
    },
  };
}
export type DeviceRepo = ReturnType<typeof createDeviceRepo>;
