import type { Clock } from "../../shared/clock.js";
import type { DeviceEvent, ProbationReport } from "../../shared/schemas/device-state.js";
import type { AgentStore } from "../store/agent-store.js";

const KEY = (model: string) => `probation:${model}`;

/**
 * The current or last probation report per model, as `reported.models[].probation` shows it
 * (architecture.md §5; the rollout gates read it). A pending report lives in memory (it changes every few
 * seconds); a final one is persisted so it survives restarts, and is announced once as a
 * `probation.verdict` event.
 */
export interface ProbationReports {
  get(model: string): ProbationReport | undefined;
  all(): Map<string, ProbationReport>;
  pending(model: string, report: ProbationReport): void;
  final(model: string, bundle: string, rolloutId: string | null, report: ProbationReport): void;
}

export function createProbationReports(deps: {
  store: AgentStore;
  clock: Clock;
  deviceId: string;
  publishEvent(e: DeviceEvent): void;
}): ProbationReports {
  const live = new Map<string, ProbationReport>();
  const get = (model: string): ProbationReport | undefined => {
    const l = live.get(model);
    if (l) return l;
    const saved = deps.store.getKv(KEY(model));
    return saved ? (JSON.parse(saved) as ProbationReport) : undefined;
  };
  return {
    get,
    all() {
      const out = new Map<string, ProbationReport>();
      for (const m of deps.store.models()) {
        const r = get(m.model);
        if (r) out.set(m.model, r);
      }
      return out;
    },
    pending(model, report) {
      live.set(model, report);
    },
    final(model, bundle, rolloutId, report) {
      live.delete(model);
      deps.store.setKv(KEY(model), JSON.stringify(report));
      deps.publishEvent({
        type: "probation.verdict",
        deviceId: deps.deviceId,
        ts: new Date(deps.clock.now()).toISOString(),
        eventSeq: deps.store.nextEventSeq(),
        model,
        bundle,
        rolloutId,
        report,
      });
    },
  };
}
