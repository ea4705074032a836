/**
 * Pure batch planning for the telemetry flush: which buffered rows go into the next batch, and
 * whether another batch may be sent now. No I/O; unit-tested directly.
 */

export interface BatchLimits {
  /** Cap on the whole MQTT payload (≤ TELEMETRY_MAX_BATCH_BYTES). */
  maxBytes: number;
  maxRecords: number;
}

/** Bytes of the batch envelope around the records (`{"v":1,"deviceId":...,"records":[...]}`), generous. */
export const ENVELOPE_BYTES = 512;

/**
 * Number of leading rows (in sequence order) that fit one batch: the JSON of each record plus
 * a comma, plus the envelope. At least one row whenever one is given and it fits at all;
 * a row that can never fit (larger than the cap) is reported so the caller can drop it.
 */
export function rowsForBatch(
  rowBytes: readonly number[],
  limits: BatchLimits,
): { take: number; oversizedFirst: boolean } {
  let size = ENVELOPE_BYTES;
  let take = 0;
  for (const b of rowBytes) {
    if (take >= limits.maxRecords) break;
    if (size + b + 1 > limits.maxBytes) break;
    size += b + 1;
    take += 1;
  }
  return { take, oversizedFirst: take === 0 && rowBytes.length > 0 };
}

export interface FlushState {
  connected: boolean;
  /** Batches published and not yet acknowledged. */
  inFlight: number;
  window: number;
  /** Rows after the last in-flight batch. */
  pendingRows: number;
}

/**
 * Whether to send another batch now. The window is what keeps a long backlog from starving live
 * traffic: at most `window` batches (≤ window × maxBytes) are ever queued in the MQTT client, and
 * every further batch is clocked by an ack, so `reported`, `events` and chunk requests published
 * meanwhile wait behind at most that much.
 */
export function maySend(s: FlushState): boolean {
  return s.connected && s.pendingRows > 0 && s.inFlight < s.window;
}
