import { describe, expect, it } from "vitest";
import { createCostService } from "../../../fleet-server/cost/cost-service.js";
import type { DeliveryRow } from "../../../fleet-server/cost/delivery-counter.js";

/** Issue 22: the server's sums per version and per rollout, over fake repositories. */
describe("cost service", () => {
  const A = "a".repeat(64);
  const B = "b".repeat(64);
  const device = (id: string, cost: { version: string; predictions: number; cpuSeconds: number }[]) => ({
    id,
    reported: {
      models: [{ model: "m", cost: cost.map((c) => ({ ...c, rssBytes: 1000, rssMaxBytes: 2000 })) }],
    },
  });
  const deliveries: DeliveryRow[] = [
    { deviceId: "d1", sha256: A, channel: "mqtt", version: "1.0.0", bytes: 500 },
    { deviceId: "d1", sha256: A, channel: "http", version: "1.0.0", bytes: 100 },
    { deviceId: "d2", sha256: A, channel: "mqtt", version: "1.0.0", bytes: 500 },
    { deviceId: "d2", sha256: B, channel: "mqtt", version: "2.0.0", bytes: 700 },
    { deviceId: "", sha256: B, channel: "http", version: "2.0.0", bytes: 700 },
  ];
  const service = createCostService({
    devices: {
      listSummaries: () =>
        [
          device("d1", [{ version: "1.0.0", predictions: 1000, cpuSeconds: 2 }]),
          device("d2", [
            { version: "1.0.0", predictions: 3000, cpuSeconds: 6 },
            { version: "2.0.0", predictions: 500, cpuSeconds: 0.5 },
          ]),
          { id: "d3", reported: null },
        ] as never,
    },
    models: { versionsOf: () => [{ version: "1.0.0" }, { version: "2.0.0" }] as never },
    rollouts: {
      list: () => [{ id: "r2", model: "m", version: "2.0.0", status: "running", createdAt: "t" }] as never,
      devices: () => [{ deviceId: "d2", bundleSha256: B }] as never,
    },
    deliveries: { ofModel: () => deliveries },
    prices: { cpuHour: 3.6, gbTransferred: 1e6, currency: "EUR" },
  });

  it("per version: every device's figures and every delivery of its bundles", () => {
    const c = service.modelCost("m");
    expect(c.versions.find((v) => v.version === "1.0.0")).toMatchObject({
      devices: 2,
      predictions: 4000,
      cpuSeconds: 8,
      cpuSecondsPer1k: 2,
      rssBytes: 2000,
      rssMaxBytes: 2000,
      bundleBytes: 1100,
      // 8 CPU-s at 3.6/hour = 0.008; 1,100 B at 10^6 per 10^9 B = 1.1.
      money: { currency: "EUR", cpu: 0.008, transfer: 1.1, total: 1.108, per1kPredictions: 0.277 },
    });
    // The operator's own download of 2.0.0 is a delivery of the version, not of the rollout.
    expect(c.versions.find((v) => v.version === "2.0.0")).toMatchObject({ devices: 1, bundleBytes: 1400 });
  });

  it("per rollout: its members' figures of its version and their own bundle's deliveries", () => {
    const [r] = service.modelCost("m", "2.0.0").rollouts;
    expect(r).toMatchObject({ rolloutId: "r2", devices: 1, predictions: 500, cpuSecondsPer1k: 1, bundleBytes: 700 });
    expect(service.modelCost("m", "1.0.0").rollouts).toEqual([]);
  });

  it("an unknown model or version is NOT_FOUND", () => {
    const none = createCostService({
      devices: { listSummaries: () => [] },
      models: { versionsOf: () => [] },
      rollouts: { list: () => [], devices: () => [] },
      deliveries: { ofModel: () => [] },
      prices: null,
    });
    expect(() => none.modelCost("x")).toThrow(expect.objectContaining({ code: "NOT_FOUND" }));
    expect(() => service.modelCost("m", "9.9.9")).toThrow(expect.objectContaining({ code: "NOT_FOUND" }));
  });
});
