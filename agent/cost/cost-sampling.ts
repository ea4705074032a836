import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { CostFigures } from "../../shared/schemas/device-state.js";
import type { ModelRuntime } from "../runtime/model-runtime.js";
import { createCostMeter } from "./cost-meter.js";

export interface CostSamplingDeps {
  clock: Clock;
  log: Logger;
  runtime: Pick<ModelRuntime, "observe" | "loaded">;
  /** Period of the hosts' RSS samples (the host answers an `rss` control request). */
  rssSampleMs: number;
  /** Minimum gap between two republications of `reported` caused by new figures. */
  reportMs: number;
  /** Republishes the retained `reported` document (which reads `snapshot`). */
  publish: () => void;
}

/**
 * The executor around the cost meter (cost-meter.ts, issue 22): every run the runtime records feeds
 * it, every loaded host's RSS is sampled on a timer, and new figures republish `reported` at most
 * once per `reportMs`, so a stream of inferences never becomes a stream of retained documents.
 */
export function startCostSampling(deps: CostSamplingDeps) {
  const { clock, runtime } = deps;
  const meter = createCostMeter();
  let report: { cancel(): void } | null = null;
  let sampler: { cancel(): void } | null = null;
  let closed = false;

  const scheduleReport = () => {
    if (closed) return;
    report ??= clock.setTimeout(() => {
      report = null;
      deps.publish();
    }, deps.reportMs);
  };
  const unobserve = runtime.observe((r) => {
    meter.onInference(r);
    if (r.ok) scheduleReport();
  });

  const sample = async () => {
    for (const l of runtime.loaded()) {
      // A host that dies meanwhile answers null (or rejects): that sample is skipped, not fatal.
      const bytes = await l.rss().catch(() => null);
      if (bytes !== null) meter.sampleRss(l.installed.model, l.installed.version, bytes, clock.now());
    }
  };
  // A sample now (a version's memory is known before the first period ends), then one per period;
  // the next is armed only once this one is over, so samples never overlap.
  const tick = (): void => {
    sample()
      .catch((err: unknown) => deps.log.warn({ err }, "host RSS sample failed"))
      .finally(() => {
        if (!closed) sampler = clock.setTimeout(tick, deps.rssSampleMs);
      });
  };
  tick();

  return {
    snapshot: (): ReadonlyMap<string, CostFigures[]> => meter.snapshot(clock.now()),
    close(): void {
      closed = true;
      unobserve();
      report?.cancel();
      sampler?.cancel();
    },
  };
}
