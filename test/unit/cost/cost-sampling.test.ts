import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { startCostSampling } from "../../../agent/cost/cost-sampling.js";
import type { InferRecord, LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { createFakeClock } from "../../../shared/clock.js";

/** Issue 22: the agent's cost executor: runs feed the meter, RSS is sampled, republication is throttled. */
describe("cost sampling", () => {
  const installed = { model: "m", version: "1.0.0" } as LoadedVersion["installed"];
  const record = (cpuMs: number): InferRecord => ({
    installed,
    at: 0,
    computeMs: 1,
    cpuMs,
    totalMs: 1,
    ok: true,
    nonFinite: 0,
    probe: false,
  });
  const flush = () => new Promise((r) => setImmediate(r));

  function setup() {
    const clock = createFakeClock(1_000);
    let listener: ((r: InferRecord) => void) | null = null;
    const rss = [100, 300];
    const runtime = {
      observe: (l: (r: InferRecord) => void) => {
        listener = l;
        return () => {
          listener = null;
        };
      },
      loaded: () => [{ installed, background: false, rss: async () => rss.shift() ?? 300 }] as LoadedVersion[],
    };
    let published = 0;
    const sampling = startCostSampling({
      clock,
      log: pino({ level: "silent" }),
      runtime,
      rssSampleMs: 1_000,
      reportMs: 5_000,
      publish: () => published++,
    });
    return {
      clock,
      sampling,
      run: (ms: number) => listener?.(record(ms)),
      published: () => published,
      listener: () => listener,
    };
  }

  it("many runs republish once per period; the figures hold the runs, CPU and sampled memory", async () => {
    const t = setup();
    await flush(); // the first RSS sample (100) at start
    for (let i = 0; i < 50; i++) t.run(2);
    t.clock.advance(1_000);
    await flush(); // the second sample (300) one second later
    expect(t.published()).toBe(0);
    t.clock.advance(4_000);
    expect(t.published()).toBe(1);
    t.clock.advance(10_000);
    expect(t.published()).toBe(1); // no new runs: no new document
    const [f] = t.sampling.snapshot().get("m")!;
    // 100 for 1 s, then 300 held for 14 s: (100 + 300·14) / 15 ≈ 287.
    expect(f).toEqual({ version: "1.0.0", predictions: 50, cpuSeconds: 0.1, rssBytes: 287, rssMaxBytes: 300 });
    t.sampling.close();
  });

  it("close stops observing and cancels a pending republication", async () => {
    const t = setup();
    t.run(1);
    t.sampling.close();
    expect(t.listener()).toBeNull();
    t.clock.advance(10_000);
    expect(t.published()).toBe(0);
  });
});
