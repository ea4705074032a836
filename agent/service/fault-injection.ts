import { type Clock, offsetClock, systemClock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { UpdaterDeps } from "../updater/updater-types.js";
import { PIPELINE, type PipelineStep } from "../updater/verdicts.js";

/**
 * Fault injection for the crash-safety and security suites, read from the environment by the
 * agent's composition root (agent/main.ts). Each hook is loudly logged; none is for production
 * (docs/operations.md lists them).
 *
 * `EDGEFLEET_FAULT_PAUSE_BEFORE_STEP=loading:8000,probation:5000`: the updater pauses before a step so
 * a test can SIGKILL the agent there. `EDGEFLEET_FAULT_PAUSE_IN_DELTA=<ms>` (issue 17): pause with a
 * rebuilt delta staged but not yet renamed into place.
 */
export function faultInjection(
  env: NodeJS.ProcessEnv,
  log: Logger,
): Pick<UpdaterDeps, "pauseBeforeStep" | "pauseInDelta"> {
  const out: Pick<UpdaterDeps, "pauseBeforeStep" | "pauseInDelta"> = {};
  const spec = env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
  if (spec) {
    const pauseBeforeStep: Partial<Record<PipelineStep, number>> = {};
    for (const part of spec.split(",")) {
      const [step, ms] = part.split(":");
      if (step && (PIPELINE as readonly string[]).includes(step) && Number(ms) > 0) {
        pauseBeforeStep[step as PipelineStep] = Number(ms);
      }
    }
    log.warn({ pauseBeforeStep }, "FAULT INJECTION enabled: updater pauses before steps (testing only)");
    out.pauseBeforeStep = pauseBeforeStep;
  }
  const inDelta = Number(env.EDGEFLEET_FAULT_PAUSE_IN_DELTA);
  if (inDelta > 0) {
    log.warn(
      { pauseInDelta: inDelta },
      "FAULT INJECTION enabled: a staged delta waits before its rename (testing only)",
    );
    out.pauseInDelta = inDelta;
  }
  return out;
}

/**
 * `EDGEFLEET_FAULT_CLOCK_OFFSET_MS=<ms>`: the security suite moves the device's clock (issue 7,
 * "clock moved forward") to show that freshness checks hold. Loudly logged; never for production.
 */
export function clockWithFault(spec: string | undefined, log: Logger): Clock {
  const offset = Number(spec);
  if (!spec || !Number.isFinite(offset) || offset === 0) return systemClock;
  log.warn({ offsetMs: offset }, "FAULT INJECTION enabled: the agent's clock is shifted (testing only)");
  return offsetClock(systemClock, offset);
}
