import { ksBinned, mergeCounts, psi } from "../../shared/drift/drift-stats.js";
import type { DriftFeatureReport } from "../../shared/schemas/telemetry.js";

export interface DriftThresholds {
  /** PSI at or above which a feature is drifting (0.2 = the usual "significant shift"). */
  psi: number;
  /** Binned KS statistic at or above which a continuous feature is drifting. */
  ks: number;
  /** An alerting feature clears only once below `clearRatio × threshold` (hysteresis). */
  clearRatio: number;
  /** Merged windows with fewer samples are not judged. */
  minSamples: number;
}

export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = { psi: 0.2, ks: 0.3, clearRatio: 0.8, minSamples: 200 };

export interface AggregatedFeature {
  name: string;
  drift: "data" | "prediction";
  kind: "continuous" | "categorical";
  devices: number;
  n: number;
  psi: number;
  ks: number | null;
  /** Mean of the devices' own PSI values (the merged PSI can hide one bad device). */
  meanDevicePsi: number;
  maxDevicePsi: number;
}

/**
 * Merges the latest window of each device (same model version, same cohort) into one histogram
 * per feature and measures it against the baseline proportions the devices reported. Features
 * whose bin layout differs between devices (different baselines) are merged per layout-agreeing
 * majority: the first device's layout wins and others are skipped. Pure.
 */
export function aggregateDrift(perDevice: readonly (readonly DriftFeatureReport[])[]): AggregatedFeature[] {
  const byName = new Map<string, DriftFeatureReport[]>();
  for (const features of perDevice) {
    for (const f of features) {
      const list = byName.get(f.name) ?? [];
      if (list.length === 0 || (list[0]!.counts.length === f.counts.length && list[0]!.source === f.source)) {
        list.push(f);
      }
      byName.set(f.name, list);
    }
  }
  const out: AggregatedFeature[] = [];
  for (const [name, list] of byName) {
    const first = list[0]!;
    const counts = mergeCounts(list.map((f) => f.counts));
    const devicePsi = list.map((f) => f.psi);
    out.push({
      name,
      drift: first.source === "input" ? "data" : "prediction",
      kind: first.kind,
      devices: list.length,
      n: list.reduce((a, f) => a + f.n, 0),
      psi: psi(first.expected, counts),
      ks: first.kind === "continuous" ? ksBinned(first.expected, counts) : null,
      meanDevicePsi: devicePsi.reduce((a, b) => a + b, 0) / devicePsi.length,
      maxDevicePsi: Math.max(...devicePsi),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export type AlertTransition = {
  type: "drift.alert.raised" | "drift.alert.cleared";
  metric: "psi" | "ks";
  value: number;
  threshold: number;
} | null;

/**
 * Hysteresis for one (version, cohort, feature): raise once when PSI (or KS for continuous
 * features) reaches its threshold, stay raised without new events while it stays above
 * `clearRatio × threshold`, clear once below. Too few samples: no change. Pure.
 */
export function alertTransition(alerting: boolean, f: AggregatedFeature, t: DriftThresholds): AlertTransition {
  if (f.n < t.minSamples) return null;
  const ksOver = f.ks !== null && f.ks >= t.ks;
  if (!alerting) {
    if (f.psi >= t.psi) return { type: "drift.alert.raised", metric: "psi", value: f.psi, threshold: t.psi };
    if (ksOver) return { type: "drift.alert.raised", metric: "ks", value: f.ks!, threshold: t.ks };
    return null;
  }
  const psiClear = f.psi < t.psi * t.clearRatio;
  const ksClear = f.ks === null || f.ks < t.ks * t.clearRatio;
  if (psiClear && ksClear)
    return { type: "drift.alert.cleared", metric: "psi", value: f.psi, threshold: t.psi * t.clearRatio };
  return null;
}
