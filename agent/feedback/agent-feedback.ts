import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import { conceptDriftEvent, createFeedback, type Feedback } from "./feedback-routes.js";

/**
 * The agent's feedback window as its composition root wires it (issue 22): ground truth joined to
 * predictions that carried an `id` (docs/protocol.md "Feedback"). A concept-drift alarm becomes a
 * device event; joined counts ride in `reported` (the fleet's accuracy gate), republished at most
 * every `reportSeconds`: a stream of labels must not become a stream of retained documents.
 */
export function createAgentFeedback(deps: {
  clock: Clock;
  log: Logger;
  config: { capacity?: number | undefined; horizonSeconds?: number | undefined; reportSeconds: number };
  deviceId: string;
  nextEventSeq: () => number;
  publishEvent: (e: DeviceEvent) => void;
  republish: () => void;
}): { feedback: Feedback; close(): void } {
  const { clock, config } = deps;
  let pending: { cancel(): void } | null = null;
  const feedback = createFeedback({
    clock,
    config: {
      ...(config.capacity !== undefined ? { capacity: config.capacity } : {}),
      ...(config.horizonSeconds !== undefined ? { horizonMs: config.horizonSeconds * 1000 } : {}),
    },
    onConceptDrift: (d) => {
      deps.log.warn({ model: d.model, version: d.version, drift: d }, "concept drift: the joined error rate rose");
      deps.publishEvent(conceptDriftEvent(d, deps.deviceId, deps.nextEventSeq()));
    },
    onJoined: () => {
      pending ??= clock.setTimeout(() => {
        pending = null;
        deps.republish();
      }, config.reportSeconds * 1000);
    },
  });
  return { feedback, close: () => pending?.cancel() };
}
