import { EdgeFleetError } from "../../shared/errors.js";
import type { ModelCost } from "../../shared/http/cost.js";
import type { CostFigures } from "../../shared/schemas/device-state.js";
import type { DeviceRepo } from "../store/device-repo.js";
import type { ModelRepo } from "../store/model-repo.js";
import type { RolloutRepo } from "../store/rollout-repo.js";
import { costLine, figuresOf, type Prices, sumFigures } from "./cost-math.js";
import type { DeliveryCounter } from "./delivery-counter.js";

export interface CostServiceDeps {
  devices: Pick<DeviceRepo, "listSummaries">;
  models: Pick<ModelRepo, "versionsOf">;
  rollouts: Pick<RolloutRepo, "list" | "devices">;
  deliveries: Pick<DeliveryCounter, "ofModel">;
  prices: Prices | null;
}

/**
 * Cost per prediction of a model (issue 22): reads the devices' retained reports, the rollouts and
 * the delivery counts, and hands the sums to cost-math.ts. Computed on request (one pass over the
 * devices' summaries, as the device list does); nothing is cached.
 */
export function createCostService(deps: CostServiceDeps) {
  return {
    modelCost(name: string, version?: string): ModelCost {
      const versions = deps.models.versionsOf(name).map((v) => v.version);
      if (versions.length === 0) throw new EdgeFleetError("NOT_FOUND", `model ${name} not found`);
      if (version !== undefined && !versions.includes(version)) {
        throw new EdgeFleetError("NOT_FOUND", `model ${name} has no version ${version}`);
      }
      const wanted = version === undefined ? versions : [version];
      /** Each device's reported cost figures of this model. */
      const reported = new Map<string, readonly CostFigures[]>();
      for (const d of deps.devices.listSummaries()) {
        const cost = d.reported?.models.find((m) => m.model === name)?.cost;
        if (cost && cost.length > 0) reported.set(d.id, cost);
      }
      const deliveries = deps.deliveries.ofModel(name);
      // Per device and bundle, both channels: a rollout's member looks up its own bundle in O(1).
      const sent = new Map<string, number>();
      for (const d of deliveries)
        sent.set(`${d.deviceId} ${d.sha256}`, (sent.get(`${d.deviceId} ${d.sha256}`) ?? 0) + d.bytes);

      const versionLines = wanted.map((v) => {
        const figures = [...reported.values()].flatMap((c) => figuresOf(c, v) ?? []);
        const bytes = deliveries.filter((x) => x.version === v).reduce((s, x) => s + x.bytes, 0);
        return { version: v, ...costLine(sumFigures(figures, bytes), deps.prices) };
      });

      const rolloutLines = deps.rollouts
        .list()
        .filter((r) => r.model === name && wanted.includes(r.version))
        .map((r) => {
          const members = deps.rollouts.devices(r.id);
          const figures = members.flatMap((m) => figuresOf(reported.get(m.deviceId), r.version) ?? []);
          // The bundle each member was assigned (its variant), as sent to that member.
          const bytes = members.reduce((s, m) => s + (sent.get(`${m.deviceId} ${m.bundleSha256}`) ?? 0), 0);
          return {
            rolloutId: r.id,
            version: r.version,
            status: r.status,
            createdAt: r.createdAt,
            ...costLine(sumFigures(figures, bytes), deps.prices),
          };
        });
      return { model: name, prices: deps.prices, versions: versionLines, rollouts: rolloutLines };
    },
  };
}
export type CostService = ReturnType<typeof createCostService>;
