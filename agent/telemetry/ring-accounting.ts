/**
 * Pure decisions of the telemetry ring buffer: how many of the oldest rows must go so the buffer
 * stays within its caps, and what the SQLite page budget is. No I/O; unit-tested directly.
 */

export interface RingCaps {
  maxRows: number;
  /** Cap on the SQLite files (database + WAL) in bytes, from the device profile. */
  maxBytes: number;
}

export interface RingState {
  rows: number;
  /** Sum of the rows' accounted sizes (`rowCost`). */
  bytes: number;
}

/**
 * Share of `maxBytes` that row payloads may use. The rest covers what SQLite adds around them:
 * B-tree page headers and partly filled pages (≈ 1.3–1.6× payload for rows of a few hundred
 * bytes), the schema pages, and the WAL, which is capped separately (`walBudget`).
 */
export const PAYLOAD_SHARE = 0.45;
export const WAL_SHARE = 0.2;
const PAGE = 4096;

export function payloadBudget(maxBytes: number): number {
  return Math.floor(maxBytes * PAYLOAD_SHARE);
}

/** WAL auto-checkpoint threshold in pages and the size the WAL file is truncated back to. */
export function walBudget(maxBytes: number): { pages: number; bytes: number } {
  const bytes = Math.floor(maxBytes * WAL_SHARE);
  return { pages: Math.max(4, Math.floor(bytes / PAGE)), bytes };
}

/** Accounted size of one row: its JSON plus a fixed estimate of the row and index overhead. */
export function rowCost(bodyBytes: number): number {
  return bodyBytes + 24;
}

/**
 * How many rows, oldest first, to evict so that `state` fits `caps`. `oldestCosts` are the
 * costs of the oldest rows in sequence order (it may be shorter than needed: the caller then
 * evicts that many and asks again). Never evicts more than it must.
 */
export function rowsToEvict(state: RingState, caps: RingCaps, oldestCosts: readonly number[]): number {
  const budget = payloadBudget(caps.maxBytes);
  let rows = state.rows;
  let bytes = state.bytes;
  let n = 0;
  while ((rows > caps.maxRows || bytes > budget) && n < oldestCosts.length) {
    bytes -= oldestCosts[n]!;
    rows -= 1;
    n += 1;
  }
  return n;
}

/** Whether `state` is over its caps (the eviction loop's stop condition). */
export function overCaps(state: RingState, caps: RingCaps): boolean {
  return state.rows > caps.maxRows || state.bytes > payloadBudget(caps.maxBytes);
}

/** Rows the caller should look at to decide an eviction: at least the row overflow, at least 64. */
export function evictionProbe(state: RingState, caps: RingCaps): number {
  return Math.max(64, state.rows - caps.maxRows);
}
