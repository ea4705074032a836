import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { LoadedVersion, ModelRuntime } from "../runtime/model-runtime.js";
import { calibrationGapMs, type LatencyPair } from "./latency-gate.js";

export interface CalibrationOptions {
  /**
   * Largest share of the device's time calibration may take (default 20 %: probation is short, and a
   * verdict needs `minPairs` pairs; a 50 ms model gets a pair every 0.5 s).
   */
  share?: number;
  /** Shortest gap between two pairs (default 200 ms). */
  minGapMs?: number;
  /** Pairs kept at most (the latest); enough for a stable median (default 400). */
  maxPairs?: number;
}

export interface Calibrator {
  /** Starts the next pair when it is due and none is running. Never throws. */
  tick(): void;
  /** The pairs measured so far (warm-up pair excluded). */
  pairs(): LatencyPair[];
  /** Resolves when no pair is running. */
  done(): Promise<void>;
}

/**
 * Interleaved calibration runs for the paired latency gate (issue 20 §6): the candidate and the
 * previous version (still warm: blue-green) run the same golden sample back to back, in alternating
 * order, at most `share` of the time. Both halves of a pair see the same load, so a load that starts
 * mid-probation moves both. The runs are ordinary probes: the recorder sees the candidate's like any
 * other probe.
 */
export function createCalibrator(
  deps: { runtime: ModelRuntime; clock: Clock; log: Logger },
  candidate: LoadedVersion,
  previous: LoadedVersion,
  samples: SamplesFile,
  opts: CalibrationOptions = {},
): Calibrator {
  const share = opts.share ?? 0.2;
  const minGapMs = opts.minGapMs ?? 200;
  const maxPairs = opts.maxPairs ?? 400;
  const pairs: LatencyPair[] = [];
  let running: Promise<void> | null = null;
  let nextAt = 0;
  let n = 0;

  async function onePair(): Promise<void> {
    const sample = samples.samples[n % samples.samples.length]!;
    const candidateFirst = n++ % 2 === 0;
    const started = performance.now();
    try {
      // The previous host sits unrouted between pairs (cold caches, sleeping threads) while client
      // traffic keeps the candidate's hot: one unmeasured run first, or the pair favours the candidate.
      await deps.runtime.probe(previous, sample.inputs);
      const a = await deps.runtime.probe(candidateFirst ? candidate : previous, sample.inputs);
      const b = await deps.runtime.probe(candidateFirst ? previous : candidate, sample.inputs);
      const [c, p] = candidateFirst ? [a, b] : [b, a];
      pairs.push({ candidateMs: c.computeMs, previousMs: p.computeMs });
      if (pairs.length > maxPairs) pairs.shift();
    } catch (err) {
      // A failed run is the recorder's business (it counts the candidate's errors); the pair is lost.
      deps.log.debug({ err }, "latency calibration pair failed");
    }
    nextAt = deps.clock.now() + calibrationGapMs(performance.now() - started, share, minGapMs);
  }

  return {
    tick() {
      if (running || samples.samples.length === 0 || deps.clock.now() < nextAt) return;
      if (!deps.runtime.isLoaded(previous) || !deps.runtime.isLoaded(candidate)) return;
      running = onePair().finally(() => {
        running = null;
      });
    },
    pairs: () => [...pairs],
    done: () => running ?? Promise.resolve(),
  };
}
