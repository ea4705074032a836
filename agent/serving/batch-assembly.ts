import { EdgeFleetError } from "../../shared/errors.js";
import { elementCount, type RawTensor, type TensorData } from "../../shared/tensors.js";

/**
 * Pure parts of dynamic batching (Triton-style): when to dispatch, which requests go together, and
 * how tensors are stacked along the batch dimension (dim 0) and split back.
 */
export interface BatchingPolicy {
  /** Largest batch the model accepts (sum of the requests' dim 0). */
  maxBatchSize: number;
  /** Dispatch at once when the queue reaches one of these sizes (largest first). */
  preferredBatchSizes: number[];
  /** How long the oldest queued request may wait for company. */
  maxQueueDelayMicros: number;
}

export type BatchDecision = { kind: "dispatch"; count: number } | { kind: "wait"; micros: number } | { kind: "idle" };

/**
 * `sizes`: dim 0 of each queued request, oldest first; `oldestWaitedMicros`: how long the first one
 * has waited. Takes the longest prefix that fits `maxBatchSize`; dispatches when that prefix hits a
 * preferred size, fills the batch, cannot grow (the next request would not fit), or the delay ran out.
 * Requests are never reordered (FIFO keeps latency fair). Pure.
 */
export function planBatch(sizes: readonly number[], oldestWaitedMicros: number, p: BatchingPolicy): BatchDecision {
  if (sizes.length === 0) return { kind: "idle" };
  let rows = 0;
  let count = 0;
  let preferredAt = 0;
  const preferred = new Set(p.preferredBatchSizes);
  for (const s of sizes) {
    if (count > 0 && rows + s > p.maxBatchSize) break;
    rows += s;
    count++;
    if (preferred.has(rows)) preferredAt = count;
  }
  const blocked = count < sizes.length; // the next one does not fit: waiting cannot help
  if (rows >= p.maxBatchSize || blocked) return { kind: "dispatch", count };
  if (preferredAt > 0 && preferredAt === count) return { kind: "dispatch", count };
  if (oldestWaitedMicros >= p.maxQueueDelayMicros) return { kind: "dispatch", count };
  return { kind: "wait", micros: p.maxQueueDelayMicros - oldestWaitedMicros };
}

/** Requests can share a batch when they have the same inputs, types and non-batch dims. Pure. */
export function batchSignature(inputs: Record<string, RawTensor>, outputs?: readonly string[]): string {
  const parts = Object.keys(inputs)
    .sort()
    .map((n) => `${n}:${inputs[n]!.type}:${inputs[n]!.dims.slice(1).join("x")}`);
  return `${parts.join("|")}>${outputs ? [...outputs].sort().join(",") : "*"}`;
}

function alloc(like: TensorData, n: number): TensorData {
  if (Array.isArray(like)) return new Array<string>(n);
  const C = like.constructor as new (n: number) => Exclude<TensorData, string[]>;
  return new C(n);
}

/** Stacks tensors along dim 0 (row-major: plain concatenation). Pure. */
export function concatRows(parts: readonly RawTensor[]): RawTensor {
  const first = parts[0];
  if (!first) throw new EdgeFleetError("INTERNAL", "empty batch");
  if (parts.length === 1) return first;
  const total = parts.reduce((n, t) => n + t.data.length, 0);
  const data = alloc(first.data, total);
  let at = 0;
  for (const t of parts) {
    if (Array.isArray(data)) for (let i = 0; i < t.data.length; i++) data[at + i] = (t.data as string[])[i]!;
    else (data as Float32Array).set(t.data as Float32Array, at);
    at += t.data.length;
  }
  const rows = parts.reduce((n, t) => n + (t.dims[0] ?? 1), 0);
  return { type: first.type, dims: [rows, ...first.dims.slice(1)], data };
}

/** Splits a batched output back into per-request tensors of `rows[i]` rows each. Pure. */
export function splitRows(t: RawTensor, rows: readonly number[]): RawTensor[] {
  const total = rows.reduce((a, b) => a + b, 0);
  if (t.dims[0] !== total) {
    throw new EdgeFleetError("INFERENCE_FAILED", `batched output has ${t.dims[0]} rows, expected ${total}`);
  }
  const per = elementCount(t.dims.slice(1));
  const out: RawTensor[] = [];
  let at = 0;
  for (const r of rows) {
    const data = Array.isArray(t.data)
      ? t.data.slice(at * per, (at + r) * per)
      : (t.data as Float32Array).slice(at * per, (at + r) * per);
    out.push({ type: t.type, dims: [r, ...t.dims.slice(1)], data });
    at += r;
  }
  return out;
}
