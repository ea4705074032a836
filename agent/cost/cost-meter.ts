import type { CostFigures } from "../../shared/schemas/device-state.js";
import type { InferRecord } from "../runtime/model-runtime.js";

/**
 * Cost per prediction on the device (issue 22, docs/operations.md "Cost per prediction"): per model
 * version, the successful runs, the host CPU attributed to them (each run reply's `cpuMs`,
 * host-protocol.ts), and the host's resident memory over time. Counts live since the agent started;
 * the server sums what devices report. Pure apart from the times it is given.
 *
 * Memory is a time-weighted mean of periodic samples (each sample holds until the next, the last
 * until `now`), with the maximum beside it: a cost figure wants what the host occupied on average
 * over its life, not the last reading (which a swap-time spike or an idle unload would skew), and
 * the maximum says what the device had to have free.
 */
export interface CostMeter {
  /** One run as the runtime saw it (`runtime.observe`). */
  onInference(r: InferRecord): void;
  /** One RSS sample of a version's host, in bytes (0 for an unloaded/parked host). */
  sampleRss(model: string, version: string, bytes: number, at: number): void;
  /** Figures per model, newest versions first, at most `maxVersions` each. */
  snapshot(now: number): ReadonlyMap<string, CostFigures[]>;
}

interface Acc {
  version: string;
  predictions: number;
  cpuMs: number;
  /** Σ rss × duration over closed sample intervals, and Σ duration (ms). */
  rssWeighted: number;
  rssWeightMs: number;
  lastRss: number | null;
  lastRssAt: number;
  rssMax: number | null;
  /** Insertion order stand-in for "newest": bumped on every update. */
  touched: number;
}

/** The `reported` schema's bound per model (CostFiguresSchema array max). */
export const MAX_COST_VERSIONS = 16;

/** Time-weighted mean of the samples so far, the last one held until `now`. Pure. */
export function rssMean(a: Pick<Acc, "rssWeighted" | "rssWeightMs" | "lastRss" | "lastRssAt">, now: number) {
  if (a.lastRss === null) return null;
  const open = Math.max(0, now - a.lastRssAt);
  const weight = a.rssWeightMs + open;
  if (weight <= 0) return a.lastRss;
  return Math.round((a.rssWeighted + a.lastRss * open) / weight);
}

export function createCostMeter(opts: { maxVersions?: number } = {}): CostMeter {
  const maxVersions = opts.maxVersions ?? MAX_COST_VERSIONS;
  const byModel = new Map<string, Map<string, Acc>>();
  let tick = 0;

  const accFor = (model: string, version: string): Acc => {
    let versions = byModel.get(model);
    if (!versions) {
      versions = new Map();
      byModel.set(model, versions);
    }
    let a = versions.get(version);
    if (!a) {
      // Bounded: the least recently updated version goes (its host is long gone on a device that swaps often).
      if (versions.size >= maxVersions) {
        let oldest: Acc | null = null;
        for (const x of versions.values()) if (!oldest || x.touched < oldest.touched) oldest = x;
        if (oldest) versions.delete(oldest.version);
      }
      a = {
        version,
        predictions: 0,
        cpuMs: 0,
        rssWeighted: 0,
        rssWeightMs: 0,
        lastRss: null,
        lastRssAt: 0,
        rssMax: null,
        touched: 0,
      };
      versions.set(version, a);
    }
    a.touched = ++tick;
    return a;
  };

  return {
    onInference(r) {
      // A failed run has no figure; its CPU rolls into the host's next successful run (model-host-main.ts).
      if (!r.ok) return;
      const a = accFor(r.installed.model, r.installed.version);
      a.predictions++;
      if (typeof r.cpuMs === "number") a.cpuMs += r.cpuMs;
    },
    sampleRss(model, version, bytes, at) {
      const a = accFor(model, version);
      if (a.lastRss !== null && at > a.lastRssAt) {
        a.rssWeighted += a.lastRss * (at - a.lastRssAt);
        a.rssWeightMs += at - a.lastRssAt;
      }
      a.lastRss = bytes;
      a.lastRssAt = Math.max(at, a.lastRssAt);
      a.rssMax = Math.max(a.rssMax ?? 0, bytes);
    },
    snapshot(now) {
      const out = new Map<string, CostFigures[]>();
      for (const [model, versions] of byModel) {
        const list = [...versions.values()]
          .sort((x, y) => y.touched - x.touched)
          .map(
            (a): CostFigures => ({
              version: a.version,
              predictions: a.predictions,
              // Microsecond resolution: the host's clock has no more, and the document stays short.
              cpuSeconds: Math.round(a.cpuMs * 1000) / 1e6,
              rssBytes: rssMean(a, now),
              rssMaxBytes: a.rssMax,
            }),
          );
        if (list.length > 0) out.set(model, list);
      }
      return out;
    },
  };
}
