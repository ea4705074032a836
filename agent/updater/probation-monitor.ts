import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { HealthPolicy } from "../../shared/schemas/desired-state.js";
import type { HealthSummary, ProbationReport } from "../../shared/schemas/device-state.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { InferRecord, LoadedVersion, ModelRuntime } from "../runtime/model-runtime.js";
import { isModelFault } from "../runtime/run-failures.js";
import { type HealthSample, summarize } from "./health-summary.js";
import { type CalibrationOptions, createCalibrator } from "./latency-calibration.js";
import { judgePairedLatency } from "./latency-gate.js";
import { judgeProbation, type ProbationJudgement, type ProbationStats, windowComplete } from "./verdicts.js";

/** Per bundle (sha256), the most recent inference samples; fed by `runtime.observe`. */
export interface HealthRecorder {
  /** Samples of `sha256` taken at or after `since` (epoch ms). */
  since(sha256: string, since: number): HealthSample[];
  close(): void;
}

const RING = 4096;
const MAX_BUNDLES = 8;

/**
 * Keeps the last `RING` samples of each of the last `MAX_BUNDLES` bundles seen, so memory stays
 * bounded however long the agent runs. The listener is synchronous and O(1) per inference.
 */
export function createHealthRecorder(runtime: Pick<ModelRuntime, "observe">): HealthRecorder {
  const rings = new Map<string, HealthSample[]>();
  const off = runtime.observe((r: InferRecord) => {
    // A request the model refused as invalid (4xx) says nothing about the model: it neither counts as an
    // error nor fills the window, so a careless app cannot fail a healthy candidate (issue 20 §3).
    if (!r.ok && !isModelFault(r.errorCode)) return;
    const sha = r.installed.sha256;
    let ring = rings.get(sha);
    if (!ring) {
      ring = [];
      rings.set(sha, ring);
      if (rings.size > MAX_BUNDLES) rings.delete(rings.keys().next().value as string);
    }
    ring.push({ at: r.at, ok: r.ok, computeMs: r.computeMs, nonFinite: r.nonFinite, probe: r.probe });
    if (ring.length > RING) ring.splice(0, ring.length - RING);
  });
  return {
    since: (sha, since) => (rings.get(sha) ?? []).filter((s) => s.at >= since),
    close: off,
  };
}

export interface MonitorDeps {
  log: Logger;
  clock: Clock;
  runtime: ModelRuntime;
  recorder: HealthRecorder;
  /** Monitor cadence: judge, maybe probe, every tick (default 200 ms). */
  tickMs?: number;
  /** A probe runs when no client request reached the version for this long (default 500 ms). */
  probeIdleMs?: number;
  /** Paired latency calibration (issue 20 §6); defaults in latency-calibration.ts. */
  calibration?: CalibrationOptions;
  /** How long past the window's close the verdict may wait for enough calibration pairs (default 60 s). */
  pairWaitMs?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Round-robin synthetic probes from the bundle's samples; at most one in flight per monitor. */
function prober(runtime: ModelRuntime, loaded: LoadedVersion, samples: SamplesFile) {
  let next = 0;
  let running: Promise<unknown> | null = null;
  return {
    fire() {
      if (running || samples.samples.length === 0) return;
      const sample = samples.samples[next++ % samples.samples.length]!;
      running = runtime
        .probe(loaded, sample.inputs)
        .catch(() => undefined) // recorded as an error by the runtime
        .finally(() => {
          running = null;
        });
    },
    done: () => running ?? Promise.resolve(),
  };
}

/**
 * Baseline for the latency verdict: the committed version's own samples over the last `windowMs`
 * (client traffic and earlier probes), topped up with probes from the *candidate's* samples until
 * there are `minSamples` successful runs, so both versions are measured on comparable inputs.
 */
export async function measureBaseline(
  deps: MonitorDeps,
  loaded: LoadedVersion,
  samples: SamplesFile,
  opts: { windowMs?: number; minSamples?: number; maxProbes?: number } = {},
): Promise<HealthSummary> {
  const { runtime, recorder, clock } = deps;
  const sha = loaded.installed.sha256;
  const from = clock.now() - (opts.windowMs ?? 120_000);
  const ok = () => recorder.since(sha, from).filter((s) => s.ok).length;
  const p = prober(runtime, loaded, samples);
  for (let i = 0; i < (opts.maxProbes ?? 60) && ok() < (opts.minSamples ?? 20); i++) {
    p.fire();
    await p.done();
  }
  return summarize(loaded.installed, recorder.since(sha, from), {
    hostRestarts: runtime.restarts(loaded),
    rssBytes: await loaded.rss(),
  });
}

export interface ProbationRun {
  candidate: LoadedVersion;
  samples: SamplesFile;
  policy: HealthPolicy;
  baseline: HealthSummary | null;
  /**
   * The previous version when its host stays warm (blue-green): the latency gate then pairs the
   * candidate's runs with its runs under the same conditions (issue 20 §6). Null: baseline only.
   */
  previous?: LoadedVersion | null;
  /** Agent restarts already spent during this candidate's probation (counted against it). */
  priorRestarts: number;
  memoryBudgetBytes: number;
  startedAt: number;
  /** Called with the pending report every couple of seconds (for `reported`). */
  onProgress(report: ProbationReport): void;
  /** True when the agent is shutting down: the monitor stops without a verdict. */
  closed(): boolean;
}

export type ProbationOutcome = {
  judgement: Exclude<ProbationJudgement, { verdict: "pending" }>;
  report: ProbationReport;
} | null;

/**
 * Watches a serving candidate until `judgeProbation` decides (architecture.md §5). The thin I/O shell around
 * the pure verdict: it reads the recorder, samples host RSS, and fires synthetic probes when client
 * traffic is idle so a quiet device still fills its window. Returns null if the agent closes first.
 */
export async function runProbation(deps: MonitorDeps, run: ProbationRun): Promise<ProbationOutcome> {
  const { runtime, recorder, clock, log } = deps;
  const tickMs = deps.tickMs ?? 200;
  const probeIdleMs = deps.probeIdleMs ?? 500;
  const { candidate } = run;
  const sha = candidate.installed.sha256;
  const probes = prober(runtime, candidate, run.samples);
  const calibrator = run.previous
    ? createCalibrator(deps, candidate, run.previous, run.samples, deps.calibration)
    : null;
  const pairWaitMs = deps.pairWaitMs ?? 60_000;
  let windowClosedAt: number | null = null;
  let rss: number | null = null;
  let lastRssAt = 0;
  let lastProgressAt = clock.now();

  const paired = () => (calibrator ? judgePairedLatency(calibrator.pairs(), run.policy.maxP95LatencyRatio) : null);
  const report = (verdict: ProbationReport["verdict"], samples: HealthSample[]): ProbationReport => {
    const r: ProbationReport = {
      verdict,
      startedAt: iso(run.startedAt),
      candidate: summarize(candidate.installed, samples, {
        hostRestarts: runtime.restarts(candidate) + run.priorRestarts,
        rssBytes: rss,
      }),
      baseline: run.baseline,
    };
    const p = paired();
    if (p) r.pairedLatency = p.figures;
    return r;
  };

  try {
    for (;;) {
      if (run.closed()) return null;
      const now = clock.now();
      if (now - lastRssAt >= 1000 && runtime.isLoaded(candidate)) {
        rss = (await candidate.rss()) ?? rss;
        lastRssAt = now;
      }
      const samples = recorder.since(sha, run.startedAt);
      const lastClient = samples.findLast((s) => !s.probe)?.at ?? run.startedAt;
      calibrator?.tick();
      const current = report("pending", samples);
      const stats: ProbationStats = {
        startedAt: run.startedAt,
        candidate: current.candidate,
        serving: runtime.serving().get(candidate.installed.model) === candidate,
        memoryBudgetBytes: run.memoryBudgetBytes,
      };
      if (windowClosedAt === null && windowComplete(stats, run.policy, now)) windowClosedAt = now;
      const p = paired();
      if (p) stats.paired = { verdict: p, waitUntil: (windowClosedAt ?? Number.POSITIVE_INFINITY) + pairWaitMs };
      const judgement = judgeProbation(stats, run.policy, run.baseline, clock.now());
      if (judgement.verdict !== "pending") {
        const final: ProbationReport = { ...current, verdict: judgement.verdict, endedAt: iso(clock.now()) };
        if (judgement.verdict === "failed") {
          final.reason = judgement.code;
          final.message = judgement.reason;
        }
        log.info({ model: candidate.installed.model, judgement, candidate: final.candidate }, "probation verdict");
        return { judgement, report: final };
      }
      if (now - lastClient >= probeIdleMs) probes.fire();
      if (now - lastProgressAt >= 2000) {
        lastProgressAt = now;
        run.onProgress(current);
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, tickMs));
    }
  } finally {
    await probes.done();
    await calibrator?.done();
  }
}
