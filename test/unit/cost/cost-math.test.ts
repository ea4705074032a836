import { describe, expect, it } from "vitest";
import { createCostMeter, rssMean } from "../../../agent/cost/cost-meter.js";
import type { InferRecord } from "../../../agent/runtime/model-runtime.js";
import { costLine, GB, sumFigures } from "../../../fleet-server/cost/cost-math.js";
import { formatModelCost } from "../../../scripts/fleetctl/cost-command.js";

/** Issue 22, cost per prediction: the pure sums and money, and the agent's meter. */
describe("cost math (server)", () => {
  const f = (predictions: number, cpuSeconds: number, rss: number | null = null) => ({
    version: "1.0.0",
    predictions,
    cpuSeconds,
    rssBytes: rss,
    rssMaxBytes: rss,
  });

  it("sums devices and gives CPU-seconds per 1,000 predictions", () => {
    const t = sumFigures([f(3000, 1.5, 100), f(1000, 0.5, 300)], 2 * GB);
    expect(t).toEqual({
      devices: 2,
      predictions: 4000,
      cpuSeconds: 2,
      rssBytes: 400,
      rssMaxBytes: 300,
      bundleBytes: 2 * GB,
    });
    // 2 CPU-s over 4,000 predictions = 0.5 CPU-s per 1,000.
    expect(costLine(t, null)).toMatchObject({ cpuSecondsPer1k: 0.5, money: null });
  });

  it("money: CPU-hours × price + GB × price, and its share per 1,000 predictions", () => {
    // 7,200 CPU-s = 2 CPU-hours at 0.05 = 0.10; 3 GB at 0.09 = 0.27; total 0.37 over 10,000 predictions.
    const t = sumFigures([f(10_000, 7200)], 3 * GB);
    const line = costLine(t, { cpuHour: 0.05, gbTransferred: 0.09, currency: "EUR" });
    expect(line.money).toEqual({ currency: "EUR", cpu: 0.1, transfer: 0.27, total: 0.37, per1kPredictions: 0.037 });
  });

  it("no predictions: per-1k figures are null, not a division by zero; memory unknown stays null", () => {
    const line = costLine(sumFigures([], 1000), { cpuHour: 1, gbTransferred: 1, currency: "USD" });
    expect(line).toMatchObject({ devices: 0, cpuSecondsPer1k: null, rssBytes: null, bundleBytes: 1000 });
    expect(line.money?.per1kPredictions).toBeNull();
    expect(line.money?.transfer).toBe(0.000001);
  });

  it("fleetctl's table shows every version and rollout with the money column", () => {
    const line = costLine(sumFigures([f(2000, 1)], 0), { cpuHour: 3.6, gbTransferred: 0, currency: "USD" });
    const text = formatModelCost({
      model: "m",
      prices: { cpuHour: 3.6, gbTransferred: 0, currency: "USD" },
      versions: [{ version: "1.0.0", ...line }],
      rollouts: [],
    });
    // 1 CPU-s at 3.6/hour = 0.001 USD; 0.5 CPU-s per 1k.
    expect(text).toMatch(/^1\.0\.0\s+1\s+2000\s+1\.000\s+0\.5000\s+-\s+0 B\s+0\.001000 USD\s+0\.000500$/m);
    expect(text).toContain("no rollouts");
  });
});

describe("cost meter (agent)", () => {
  const run = (version: string, cpuMs: number | null, ok = true): InferRecord => ({
    installed: { model: "m", version } as InferRecord["installed"],
    at: 0,
    computeMs: ok ? 1 : null,
    cpuMs,
    totalMs: 1,
    ok,
    nonFinite: 0,
    probe: false,
  });

  it("counts successful runs and their CPU per version; a failed run adds nothing", () => {
    const m = createCostMeter();
    for (let i = 0; i < 10; i++) m.onInference(run("1.0.0", 2.5));
    m.onInference(run("1.0.0", null, false));
    m.onInference(run("2.0.0", 1));
    const figures = m.snapshot(0).get("m")!;
    expect(figures.find((x) => x.version === "1.0.0")).toMatchObject({ predictions: 10, cpuSeconds: 0.025 });
    expect(figures.find((x) => x.version === "2.0.0")).toMatchObject({ predictions: 1, cpuSeconds: 0.001 });
  });

  it("memory: each sample holds until the next, the last until now (time-weighted mean), and the max", () => {
    const m = createCostMeter();
    m.sampleRss("m", "1.0.0", 100, 0);
    m.sampleRss("m", "1.0.0", 300, 1000); // 100 for 1 s
    // now = 4000: 300 for 3 s → (100·1 + 300·3) / 4 = 250.
    expect(m.snapshot(4000).get("m")![0]).toMatchObject({ rssBytes: 250, rssMaxBytes: 300 });
    expect(rssMean({ rssWeighted: 0, rssWeightMs: 0, lastRss: null, lastRssAt: 0 }, 10)).toBeNull();
    expect(rssMean({ rssWeighted: 0, rssWeightMs: 0, lastRss: 42, lastRssAt: 10 }, 10)).toBe(42);
  });

  it("keeps at most maxVersions per model, dropping the least recently updated", () => {
    const m = createCostMeter({ maxVersions: 2 });
    m.onInference(run("1.0.0", 1));
    m.onInference(run("2.0.0", 1));
    m.onInference(run("1.0.0", 1));
    m.onInference(run("3.0.0", 1));
    expect(
      m
        .snapshot(0)
        .get("m")!
        .map((x) => x.version),
    ).toEqual(["3.0.0", "1.0.0"]);
  });
});
