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
import { dialectOf } from "./sql-db.js";

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

/**
 * A device without its credentials and its last signed desired state: what listings, selectors and
 * the rollout planner read for every device on every tick. The desired envelope carries a signed
 * manifest per assignment; decoding 10,000 of them each second was most of the scheduler's time
 * (issue 14, `npm run bench -- fleet-scale`).
 */
export type DeviceListRow = Omit<DeviceRow, "passwordHash" | "desired">;

type RawListed = Omit<RawDevice, "password_hash" | "desired">;

/** Filters and keyset paging of `listPage` (ordered by id; `after` is the last id of the previous page). */
export interface DeviceListQuery {
  limit?: number;
  after?: string;
  profile?: string;
  presence?: "online" | "offline";
  /** Every pair must match (JSON `tags` column). */
  tags?: Record<string, string>;
}

/**
 * Decoded reported states by device, reused while the stored text is the same: the planner reads
 * every device's report on every tick, and most do not change between two ticks. Bounded by the
 * number of devices (one entry each), dropped with the row's text.
 */
function createReportedMemo() {
  const memo = new Map<string, { raw: string; value: ReportedState }>();
  return {
    decode(id: string, raw: string | null): ReportedState | null {
      if (raw === null) {
        memo.delete(id);
        return null;
      }
      const hit = memo.get(id);
      if (hit && hit.raw === raw) return hit.value;
      const value = decodeJsonOrNull(ReportedStateSchema, raw, {
        table: "devices",
        key: `id=${id}`,
        column: "reported",
      });
      if (value) memo.set(id, { raw, value });
      return value;
    },
    prime(id: string, raw: string, value: ReportedState): void {
      memo.set(id, { raw, value });
    },
  };
}
type ReportedMemo = ReturnType<typeof createReportedMemo>;

function toListRow(r: RawListed, reported: ReportedMemo): DeviceListRow {
  const at = (column: string) => ({ table: "devices", key: `id=${r.id}`, column });
  return {
    id: r.id,
    tags: decodeJson(TagsSchema, r.tags, at("tags")),
    profile: r.profile,
    presence: decodeValue(PresenceSchema, r.presence, at("presence")),
    reported: reported.decode(r.id, r.reported),
    lastSeen: r.last_seen,
    desiredSeq: r.desired_seq,
    createdAt: r.created_at,
  };
}

function toRow(r: RawDevice, reported: ReportedMemo): DeviceRow {
  const at = (column: string) => ({ table: "devices", key: `id=${r.id}`, column });
  return {
    ...toListRow(r, reported),
    passwordHash: r.password_hash,
    desired: decodeSignedJsonOrNull(SignedDesiredStateSchema, r.desired, at("desired")),
  };
}

const LIST_COLUMNS = "id, tags, profile, presence, reported, last_seen, desired_seq, created_at";

export interface StoredEvent {
  eventSeq: number;
  type: string;
  ts: string;
  body: DeviceEvent;
}

export function createDeviceRepo(db: Db) {
  const getStmt = db.prepare("SELECT * FROM devices WHERE id = ?");
  const existsStmt = db.prepare("SELECT 1 FROM devices WHERE id = ?");
  const listStmt = db.prepare(`SELECT ${LIST_COLUMNS} FROM devices ORDER BY id`);
  const getSummaryStmt = db.prepare(`SELECT ${LIST_COLUMNS} FROM devices WHERE id = ?`);
  const eventsStmt = db.prepare(
    "SELECT event_seq, type, ts, body FROM device_events WHERE device_id = ? ORDER BY event_seq DESC LIMIT ?",
  );
  const membersEventsStmt = db.prepare(
    `SELECT device_id, event_seq, body FROM (
       SELECT e.device_id, e.event_seq, e.body,
              ROW_NUMBER() OVER (PARTITION BY e.device_id ORDER BY e.event_seq DESC) AS n
       FROM device_events e JOIN rollout_devices rd ON rd.device_id = e.device_id AND rd.rollout_id = ?
     ) AS ranked WHERE n <= ? ORDER BY device_id, event_seq DESC`,
  );
  const presenceStmt = db.prepare("UPDATE devices SET presence = ?, last_seen = ? WHERE id = ?");
  const reportedStmt = db.prepare("UPDATE devices SET reported = ?, last_seen = ? WHERE id = ?");
  const nextSeqStmt = db.prepare("UPDATE devices SET desired_seq = desired_seq + 1 WHERE id = ? RETURNING desired_seq");
  const setDesiredStmt = db.prepare("UPDATE devices SET desired = ? WHERE id = ?");
  const reported = createReportedMemo();
  const pg = dialectOf(db) === "postgres";
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
      return r ? toRow(r, reported) : null;
    },
    list(): DeviceRow[] {
      return (db.prepare("SELECT * FROM devices ORDER BY id").all() as RawDevice[]).map((r) => toRow(r, reported));
    },
    /** One device without credentials and desired state; null when unknown. */
    getSummary(id: string): DeviceListRow | null {
      const r = getSummaryStmt.get(id) as RawListed | undefined;
      return r ? toListRow(r, reported) : null;
    },
    /** Every device without credentials and desired state (listings, selectors, the rollout planner). */
    listSummaries(): DeviceListRow[] {
      return (listStmt.all() as RawListed[]).map((r) => toListRow(r, reported));
    },
    /**
     * One page, filtered in SQL: keyset paging on the primary key (`id > after`), so page N costs the
     * same as page 1 whatever the fleet size; tags through `json_each` on the stored object.
     */
    listPage(q: DeviceListQuery): DeviceListRow[] {
      const where: string[] = [];
      const args: unknown[] = [];
      if (q.after !== undefined) {
        where.push("id > ?");
        args.push(q.after);
      }
      if (q.profile !== undefined) {
        where.push("profile = ?");
        args.push(q.profile);
      }
      if (q.presence !== undefined) {
        where.push("presence = ?");
        args.push(q.presence);
      }
      for (const [k, v] of Object.entries(q.tags ?? {})) {
        // json_each rather than a JSON path: a tag key may hold any character, a path would need quoting.
        // PostgreSQL's own table function differs in name and needs the TEXT column cast (issue 14).
        where.push(
          pg
            ? "EXISTS (SELECT 1 FROM jsonb_each_text(devices.tags::jsonb) AS t(key, value) WHERE t.key = ? AND t.value = ?)"
            : "EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE json_each.key = ? AND json_each.value = ?)",
        );
        args.push(k, v);
      }
      const sql = `SELECT ${LIST_COLUMNS} FROM devices${where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY id${q.limit !== undefined ? " LIMIT ?" : ""}`;
      if (q.limit !== undefined) args.push(q.limit);
      return (db.prepare(sql).all(...args) as RawListed[]).map((r) => toListRow(r, reported));
    },
    setPresence(id: string, presence: "online" | "offline", now: string): void {
      presenceStmt.run(presence, now, id);
    },
    setReported(id: string, value: ReportedState, now: string): void {
      const text = JSON.stringify(value);
      reportedStmt.run(text, now, id);
      // Validated on the way in: the planner's next read reuses it instead of parsing it again.
      reported.prime(id, text, value);
    },
    /** Reserves the next desired-state sequence number for a device (monotonic, persisted). */
    nextSeq(id: string): number {
      const row = nextSeqStmt.get(id) as { desired_seq: number } | undefined;
      if (!row) throw new Error(`device ${id} vanished`);
      return row.desired_seq;
    },
    setDesired(id: string, desired: SignedDesiredState): void {
      setDesiredStmt.run(JSON.stringify(desired), id);
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
    /**
     * The `limit` most recent events of every member of a rollout, newest first, in one query: the
     * planner observes every member on each tick, and one query per member was its largest cost at
     * 1,000 devices (issue 14).
     */
    recentEventsOfMembers(rolloutId: string, limit: number): Map<string, DeviceEvent[]> {
      const rows = membersEventsStmt.all(rolloutId, limit) as { device_id: string; event_seq: number; body: string }[];
      const out = new Map<string, DeviceEvent[]>();
      for (const r of rows) {
        const body = decodeJson(DeviceEventSchema, r.body, {
          table: "device_events",
          key: `device_id=${r.device_id}, event_seq=${r.event_seq}`,
          column: "body",
        });
        const list = out.get(r.device_id);
        if (list) list.push(body);
        else out.set(r.device_id, [body]);
      }
      return out;
    },
    recentEvents(deviceId: string, limit: number): StoredEvent[] {
      const rows = eventsStmt.all(deviceId, limit) as { event_seq: number; type: string; ts: string; body: string }[];
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
