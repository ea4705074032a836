import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { TelemetryAckSchema } from "../../shared/schemas/telemetry.js";
import { type BatchLimits, maySend, rowsForBatch } from "./batch-plan.js";
import type { TelemetryBuffer } from "./telemetry-buffer.js";

export interface FlusherDeps {
  log: Logger;
  clock: Clock;
  deviceId: string;
  buffer: TelemetryBuffer;
  /** Whether the MQTT link is connected right now (batches are never queued while offline). */
  connected: () => boolean;
  /** Publishes one batch payload QoS 1 on the device's `telemetry` topic. */
  publish: (payload: Buffer) => void;
  limits: BatchLimits;
  /** Batches in flight before waiting for acks. */
  window: number;
  /** A batch not acked within this is considered lost and everything in flight is re-sent. */
  ackTimeoutMs: number;
  onBatchSent?: (records: number, bytes: number) => void;
  onAck?: (rows: number, status: "stored" | "rejected") => void;
  onBadAck?: () => void;
}

export interface Flusher {
  /** Sends what the window allows now; further batches follow acks until the backlog is empty. */
  kick(): void;
  /** Handles a payload from `telemetry/ack`. Never throws. */
  onAck(payload: Buffer): void;
  /** The link dropped: nothing in flight will be acked, re-send from the oldest row later. */
  onDisconnect(): void;
  inFlight(): number;
  close(): void;
}

interface InFlight {
  firstSeq: number;
  lastSeq: number;
}

/**
 * Drains the telemetry buffer over MQTT (at-least-once; the server de-duplicates by seq).
 *
 * Invariants: batches in flight cover disjoint, increasing seq ranges and `cursor` is the last
 * seq handed out, so no row is in two in-flight batches; a row is deleted only by an ack naming
 * its range. On disconnect or ack timeout the cursor goes back to 0: every unacked row is sent
 * again (duplicates are the server's to drop). Reading and publishing are synchronous, and the
 * next batch after an ack is sent from `setImmediate`, so socket requests and other MQTT traffic
 * interleave with a long drain.
 */
export function createFlusher(deps: FlusherDeps): Flusher {
  const { log, buffer } = deps;
  let inFlight: InFlight[] = [];
  let cursor = 0;
  let timer: { cancel(): void } | null = null;
  let kickScheduled = false;
  let closed = false;

  const resetTimer = () => {
    timer?.cancel();
    timer = null;
    if (inFlight.length === 0 || closed) return;
    timer = deps.clock.setTimeout(() => {
      timer = null;
      log.warn({ inFlight: inFlight.length }, "telemetry ack timed out; re-sending from the oldest row");
      inFlight = [];
      cursor = 0;
      kick();
    }, deps.ackTimeoutMs);
  };

  const sendOne = (): boolean => {
    const rows = buffer.readAfter(cursor, deps.limits.maxRecords);
    if (rows.length === 0) return false;
    const plan = rowsForBatch(
      rows.map((r) => Buffer.byteLength(r.json)),
      deps.limits,
    );
    if (plan.oversizedFirst) {
      // Cannot happen with the record cap below the batch cap; never let one row wedge the queue.
      log.error({ seq: rows[0]!.seq }, "telemetry row larger than a batch; dropping it");
      buffer.remove(rows[0]!.seq, rows[0]!.seq, "rejected");
      return true;
    }
    const take = rows.slice(0, plan.take);
    const firstSeq = take[0]!.seq;
    const lastSeq = take.at(-1)!.seq;
    const stats = buffer.stats();
    const head = JSON.stringify({
      v: 1,
      deviceId: deps.deviceId,
      firstSeq,
      lastSeq,
      sentAt: deps.clock.now(),
      dropped: stats.dropped + stats.rejected,
    });
    const payload = Buffer.from(`${head.slice(0, -1)},"records":[${take.map((r) => r.json).join(",")}]}`);
    deps.publish(payload);
    inFlight.push({ firstSeq, lastSeq });
    cursor = lastSeq;
    deps.onBatchSent?.(take.length, payload.length);
    return true;
  };

  function kick(): void {
    if (closed) return;
    try {
      while (
        maySend({ connected: deps.connected(), inFlight: inFlight.length, window: deps.window, pendingRows: 1 }) &&
        sendOne()
      ) {
        /* fill the window */
      }
    } catch (err) {
      log.error({ err }, "telemetry flush failed");
    }
    if (!timer) resetTimer();
  }

  const kickSoon = () => {
    if (kickScheduled) return;
    kickScheduled = true;
    setImmediate(() => {
      kickScheduled = false;
      kick();
    });
  };

  return {
    kick,
    onAck(payload) {
      let json: unknown;
      try {
        json = JSON.parse(payload.toString("utf8"));
      } catch {
        json = undefined;
      }
      const parsed = TelemetryAckSchema.safeParse(json);
      if (!parsed.success || parsed.data.deviceId !== deps.deviceId || parsed.data.lastSeq < parsed.data.firstSeq) {
        deps.onBadAck?.();
        log.warn("telemetry ack invalid; ignored");
        return;
      }
      const ack = parsed.data;
      if (ack.status === "rejected") log.warn({ ack }, "server rejected a telemetry batch; its rows are dropped");
      const removed = buffer.remove(ack.firstSeq, ack.lastSeq, ack.status === "stored" ? "acked" : "rejected");
      deps.onAck?.(removed, ack.status);
      const before = inFlight.length;
      inFlight = inFlight.filter((b) => b.lastSeq < ack.firstSeq || b.firstSeq > ack.lastSeq);
      if (inFlight.length !== before) resetTimer();
      kickSoon();
    },
    onDisconnect() {
      inFlight = [];
      cursor = 0;
      timer?.cancel();
      timer = null;
    },
    inFlight: () => inFlight.length,
    close() {
      closed = true;
      timer?.cancel();
      timer = null;
    },
  };
}
