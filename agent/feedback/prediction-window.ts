import type { Clock } from "../../shared/clock.js";
import type { RawTensor } from "../../shared/tensors.js";

/**
 * What the agent remembers of a prediction so later ground truth can be joined to it (issue 22):
 * the version and A/B arm that answered and a summary of the output, never the inputs. A
 * classifier's summary is its predicted class; anything else keeps its first values.
 */
export type PredictionSummary = { kind: "class"; label: number } | { kind: "values"; values: number[] };

export interface Prediction {
  model: string;
  id: string;
  version: string;
  arm: string | null;
  at: number;
  summary: PredictionSummary;
}

/** Values kept of a regression output: enough for a scalar or a short vector target. */
export const MAX_VALUES = 64;

/**
 * A classifier output is [C] or [1, C] with C >= 2 classes (the convention the int8 policy's
 * top-1 check uses too); its summary is the arg-max. Other numeric outputs keep their first values.
 */
export function summarise(output: RawTensor): PredictionSummary | null {
  const data = output.data;
  if (!(ArrayBuffer.isView(data) && !(data instanceof DataView)) || typeof (data as Float32Array)[0] !== "number") {
    return null;
  }
  const values = data as unknown as ArrayLike<number>;
  const dims = output.dims;
  const classes = dims.at(-1) ?? 0;
  const rows = dims.slice(0, -1).reduce((a, b) => a * b, 1);
  if (classes >= 2 && rows === 1 && dims.length <= 2) {
    let best = 0;
    for (let i = 1; i < classes; i++) if (values[i]! > values[best]!) best = i;
    return { kind: "class", label: best };
  }
  const out: number[] = [];
  for (let i = 0; i < Math.min(values.length, MAX_VALUES); i++) out.push(Number(values[i]));
  return { kind: "values", values: out };
}

export type LookupResult =
  | { found: true; prediction: Prediction }
  | { found: false; reason: "unknown" | "expired" | "already-joined" };

export interface PredictionWindow {
  record(p: Prediction): void;
  /** Takes the prediction for feedback: a second feedback for the same id is `already-joined`. */
  take(model: string, id: string): LookupResult;
  size(): number;
}

/**
 * Bounded memory of recent predictions (issue 22): at most `capacity` entries, oldest dropped
 * first, and none older than `horizonMs` can be joined. Ids are the caller's v2 request `id`s; a
 * request id reused while still in the window replaces the older prediction (the newest answer is
 * what the caller acted on). Joined ids are remembered (bounded the same way) so duplicate
 * feedback is told apart from an unknown id.
 */
export function createPredictionWindow(opts: { clock: Clock; capacity: number; horizonMs: number }): PredictionWindow {
  const { clock, capacity, horizonMs } = opts;
  const live = new Map<string, Prediction>();
  const joined = new Map<string, number>();
  const key = (model: string, id: string) => `${model}\u0000${id}`;
  const trim = <V>(m: Map<string, V>) => {
    while (m.size > capacity) m.delete(m.keys().next().value as string);
  };
  return {
    record(p) {
      const k = key(p.model, p.id);
      live.delete(k); // re-insert at the end: Map order is the eviction order
      joined.delete(k);
      live.set(k, p);
      trim(live);
    },
    take(model, id) {
      const k = key(model, id);
      const p = live.get(k);
      if (!p) return { found: false, reason: joined.has(k) ? "already-joined" : "unknown" };
      live.delete(k);
      if (clock.now() - p.at > horizonMs) return { found: false, reason: "expired" };
      joined.set(k, clock.now());
      trim(joined);
      return { found: true, prediction: p };
    },
    size: () => live.size,
  };
}
