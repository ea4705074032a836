import type { ErrorCode } from "../../shared/errors.js";
import {
  TELEMETRY_MAX_BATCH_BYTES,
  type TelemetryBatch,
  TelemetryBatchSchema,
  type TelemetryRecord,
  TelemetryRecordSchema,
} from "../../shared/schemas/telemetry.js";

export type RejectReason = "malformed" | "device_mismatch" | "too_large" | "seq_backwards";

export type BatchCheck =
  | { ok: true; batch: TelemetryBatch }
  | {
      ok: false;
      reason: RejectReason;
      code: ErrorCode;
      message: string;
      /** The batch's declared range when it could be read, so the device can be told. */
      range: { firstSeq: number; lastSeq: number } | null;
    };

const CODES: Record<RejectReason, ErrorCode> = {
  malformed: "TELEMETRY_MALFORMED",
  device_mismatch: "TELEMETRY_DEVICE_MISMATCH",
  too_large: "TELEMETRY_TOO_LARGE",
  seq_backwards: "TELEMETRY_SEQ_BACKWARDS",
};

const reject = (
  reason: RejectReason,
  message: string,
  range: { firstSeq: number; lastSeq: number } | null = null,
): BatchCheck => ({ ok: false, reason, code: CODES[reason], message, range });

/**
 * Pure validation of one telemetry payload from the device in the topic (architecture.md §4): size first
 * (before parsing anything), then JSON and schema, then identity, then sequence order. Every
 * record must parse: a batch is stored whole or not at all, so its ack means one thing.
 *
 * "Sequence going backwards" is checked inside the batch (records strictly increasing within
 * firstSeq..lastSeq). A batch whose range the server has already stored is NOT an error: it is
 * the normal re-send after a lost ack, and de-duplication handles it.
 */
export function checkBatch(topicDeviceId: string, payload: Buffer): BatchCheck {
  if (payload.length > TELEMETRY_MAX_BATCH_BYTES) {
    return reject("too_large", `batch is ${payload.length} bytes; the cap is ${TELEMETRY_MAX_BATCH_BYTES}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString("utf8"));
  } catch {
    return reject("malformed", "batch is not JSON");
  }
  const head = TelemetryBatchSchema.safeParse(json);
  if (!head.success) {
    const issue = head.error.issues[0];
    return reject("malformed", `batch: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "invalid"}`);
  }
  const b = head.data;
  const range = { firstSeq: b.firstSeq, lastSeq: b.lastSeq };
  if (b.deviceId !== topicDeviceId) {
    // No range in the answer: the ack would go to the topic's device about another device's rows.
    return reject("device_mismatch", `payload deviceId ${b.deviceId} on the topic of ${topicDeviceId}`);
  }
  if (b.lastSeq < b.firstSeq) return reject("seq_backwards", `lastSeq ${b.lastSeq} < firstSeq ${b.firstSeq}`, range);
  const records: TelemetryRecord[] = [];
  let prev = b.firstSeq - 1;
  for (let i = 0; i < b.records.length; i++) {
    const r = TelemetryRecordSchema.safeParse(b.records[i]);
    if (!r.success) {
      const issue = r.error.issues[0];
      return reject("malformed", `records[${i}]: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "invalid"}`, range);
    }
    if (r.data.seq <= prev || r.data.seq > b.lastSeq) {
      return reject(
        "seq_backwards",
        `records[${i}].seq ${r.data.seq} after ${prev} (range ${b.firstSeq}..${b.lastSeq})`,
        range,
      );
    }
    prev = r.data.seq;
    records.push(r.data);
  }
  return { ok: true, batch: { ...b, records } };
}
