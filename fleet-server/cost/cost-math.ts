import type { CostFigures } from "../../shared/schemas/device-state.js";

/**
 * Cost per prediction on the server (issue 22, docs/operations.md "Cost per prediction"): sums of
 * what devices reported per version (`reported.models[].cost`), bundle bytes delivered, and money
 * from the configured prices. Pure.
 */

/** `prices` in the server config: per CPU-hour and per GB (10^9 bytes) transferred, in `currency`. */
export interface Prices {
  cpuHour: number;
  gbTransferred: number;
  currency: string;
}

export interface CostTotals {
  /** Devices that reported figures for the version. */
  devices: number;
  predictions: number;
  cpuSeconds: number;
  /** Sum over devices of each host's time-weighted mean RSS (what the fleet holds resident), null without samples. */
  rssBytes: number | null;
  /** Largest RSS any one device's host reached. */
  rssMaxBytes: number | null;
  /** Bundle bytes the server sent (HTTP and MQTT chunks, resumes and retries included). */
  bundleBytes: number;
}

export interface Money {
  currency: string;
  cpu: number;
  transfer: number;
  total: number;
  /** `total` per 1,000 predictions; null before any prediction. */
  per1kPredictions: number | null;
}

export interface CostLine extends CostTotals {
  /** CPU-seconds per 1,000 predictions; null before any prediction. */
  cpuSecondsPer1k: number | null;
  /** Null when the server has no `prices`. */
  money: Money | null;
}

export const GB = 1e9;

const EMPTY: CostTotals = {
  devices: 0,
  predictions: 0,
  cpuSeconds: 0,
  rssBytes: null,
  rssMaxBytes: null,
  bundleBytes: 0,
};

const addNullable = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : a + b);
const maxNullable = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/** Sums one version's figures over devices (each device's entry for it, at most one per device). */
export function sumFigures(figures: readonly CostFigures[], bundleBytes = 0): CostTotals {
  let t: CostTotals = { ...EMPTY, bundleBytes };
  for (const f of figures) {
    t = {
      devices: t.devices + 1,
      predictions: t.predictions + f.predictions,
      cpuSeconds: t.cpuSeconds + f.cpuSeconds,
      rssBytes: addNullable(t.rssBytes, f.rssBytes),
      rssMaxBytes: maxNullable(t.rssMaxBytes, f.rssMaxBytes),
      bundleBytes: t.bundleBytes,
    };
  }
  return t;
}

/** Rounded for display without losing what a per-1k figure of a sub-millisecond model needs. */
const round = (x: number, digits = 6) => Number(x.toFixed(digits));

/** The per-1k figures and the money of `t` at `prices`. */
export function costLine(t: CostTotals, prices: Prices | null): CostLine {
  const per1k = (x: number) => (t.predictions > 0 ? round((x / t.predictions) * 1000) : null);
  let money: Money | null = null;
  if (prices) {
    const cpu = (t.cpuSeconds / 3600) * prices.cpuHour;
    const transfer = (t.bundleBytes / GB) * prices.gbTransferred;
    money = {
      currency: prices.currency,
      cpu: round(cpu),
      transfer: round(transfer),
      total: round(cpu + transfer),
      per1kPredictions: per1k(cpu + transfer),
    };
  }
  return { ...t, cpuSeconds: round(t.cpuSeconds), cpuSecondsPer1k: per1k(t.cpuSeconds), money };
}

/** Each device's entry for `version` in its reported cost figures of a model, or none. */
export function figuresOf(cost: readonly CostFigures[] | undefined, version: string): CostFigures | undefined {
  return cost?.find((f) => f.version === version);
}
