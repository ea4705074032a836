import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ksBinned, proportions, psi } from "../../shared/drift/drift-stats.js";
import type { Logger } from "../../shared/logger.js";
import { type Baseline, BaselineSchema } from "../../shared/schemas/baseline.js";
import type { DriftFeatureReport, UnsequencedRecord } from "../../shared/schemas/telemetry.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { featureSamples, RollingHistogram } from "./rolling-window.js";

export interface DriftMonitorOptions {
  log: Logger;
  now: () => number;
  /** Samples per feature window. */
  window: number;
  /** A window with fewer samples is not reported (PSI on a handful of samples is noise). */
  minSamples: number;
}

export interface DriftTarget {
  model: string;
  version: string;
  /** The extracted bundle directory, where `baseline.json` lives when the bundle has one. */
  dir: string;
}

export interface DriftGauge {
  model: string;
  version: string;
  feature: string;
  drift: "data" | "prediction";
  psi: number;
  ks: number | null;
}

export interface DriftMonitor {
  /** Feeds one successful inference's tensors into that version's windows. Never throws. */
  observe(target: DriftTarget, inputs: Record<string, JsonTensor>, outputs: Record<string, JsonTensor>): void;
  /** One `drift` record per version whose windows got new samples since the last snapshot. */
  snapshot(): UnsequencedRecord[];
  /** Current PSI/KS per feature, for the metrics endpoint. */
  gauges(): DriftGauge[];
}

interface VersionWindows {
  target: DriftTarget;
  baseline: Baseline;
  windows: RollingHistogram[];
}

function report(v: VersionWindows, i: number): DriftFeatureReport {
  const f = v.baseline.features[i]!;
  const w = v.windows[i]!;
  return {
    name: f.name,
    source: f.source,
    kind: f.kind,
    n: w.n,
    counts: [...w.counts],
    expected: proportions(f.counts).map((p) => Math.round(p * 1e6) / 1e6),
    psi: psi(f.counts, w.counts),
    ks: f.kind === "continuous" ? ksBinned(f.counts, w.counts) : null,
  };
}

/**
 * Rolling drift windows per model version (architecture.md §5, issue 6). The baseline is read once per
 * bundle directory; a bundle without one (or with an invalid one, logged once) has no drift.
 * All state lives in this object; the composition root owns it.
 */
export function createDriftMonitor(opts: DriftMonitorOptions): DriftMonitor {
  const byDir = new Map<string, VersionWindows | null>();

  const windowsFor = (t: DriftTarget): VersionWindows | null => {
    if (byDir.has(t.dir)) return byDir.get(t.dir)!;
    let entry: VersionWindows | null = null;
    try {
      const raw = JSON.parse(readFileSync(join(t.dir, "baseline.json"), "utf8"));
      const baseline = BaselineSchema.parse(raw);
      entry = {
        target: t,
        baseline,
        windows: baseline.features.map((f) => new RollingHistogram(f.edges, opts.window)),
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        opts.log.warn({ err, model: t.model, version: t.version }, "baseline.json invalid; no drift for this version");
      }
    }
    byDir.set(t.dir, entry);
    return entry;
  };

  return {
    observe(target, inputs, outputs) {
      try {
        const v = windowsFor(target);
        if (!v) return;
        v.baseline.features.forEach((f, i) => {
          const t = f.source === "input" ? inputs[f.tensor] : outputs[f.tensor];
          for (const x of featureSamples(f, t)) v.windows[i]!.add(x);
        });
      } catch (err) {
        opts.log.warn({ err }, "drift observation failed");
      }
    },
    snapshot() {
      const out: UnsequencedRecord[] = [];
      for (const v of byDir.values()) {
        if (!v?.windows.some((w) => w.fresh > 0)) continue;
        const features = v.baseline.features
          .map((_, i) => i)
          .filter((i) => v.windows[i]!.n >= opts.minSamples)
          .map((i) => report(v, i));
        if (features.length === 0) continue;
        for (const w of v.windows) w.markReported();
        out.push({ kind: "drift", ts: opts.now(), model: v.target.model, version: v.target.version, features });
      }
      return out;
    },
    gauges() {
      const out: DriftGauge[] = [];
      for (const v of byDir.values()) {
        if (!v) continue;
        v.baseline.features.forEach((f, i) => {
          if (v.windows[i]!.n < opts.minSamples) return;
          const r = report(v, i);
          out.push({
            model: v.target.model,
            version: v.target.version,
            feature: f.name,
            drift: f.source === "input" ? "data" : "prediction",
            psi: r.psi,
            ks: r.ks,
          });
        });
      }
      return out;
    },
  };
}
