import { summarize } from "./stats.js";
import { closedLoop, sleep, startServingFixture } from "./swap-fixture.js";

/**
 * Scenario "swap under load" (architecture.md §9, issue 3): `clients` closed-loop clients infer Silero VAD over
 * the Unix socket while a new version is loaded, smoke-tested and activated (the updater's swap path).
 *   anchor — the same load for the same time with no swap;
 *   figure — latency before / during (from the start of loading to the end of the drain) / after,
 *            and failed requests (the contract: zero).
 */
export async function benchSwapUnderLoad(clients = 4, phaseMs = 3_000): Promise<Record<string, unknown>> {
  const f = await startServingFixture();
  try {
    const send = (c: import("../../agent/client/socket-client.js").SocketClient) =>
      c.inferTensors("silero-vad", f.inputs);
    await f.runtime.activate(await f.runtime.load(await f.install("1.0.0")));

    const anchorLoad = closedLoop(f.socketPath, clients, send);
    await sleep(phaseMs * 3);
    const anchor = await anchorLoad.stop();

    const load = closedLoop(f.socketPath, clients, send);
    await sleep(phaseMs);
    const swapStart = performance.now();
    const next = await f.runtime.load(await f.install("2.0.0"));
    const smoke = await f.runtime.smokeTest(next, {
      samples: [{ inputs: f.inputs, outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } }],
    });
    if (!smoke.ok) throw new Error("smoke test failed in benchmark");
    await f.runtime.activate(next);
    const swapEnd = performance.now();
    await sleep(phaseMs);
    const all = await load.stop();

    const lat = (xs: typeof all) => summarize(xs.filter((s) => s.ok).map((s) => s.ms));
    const before = all.filter((s) => s.start < swapStart);
    const during = all.filter((s) => s.start >= swapStart && s.start <= swapEnd);
    const after = all.filter((s) => s.start > swapEnd);
    return {
      scenario: "swap-under-load",
      model: "silero_vad_v5 (fp32), generic-x64 profile",
      clients,
      anchor: { what: "same load, no swap", ...lat(anchor), failed: anchor.filter((s) => !s.ok).length },
      figure: {
        before: lat(before),
        during: lat(during),
        after: lat(after),
        failed: all.filter((s) => !s.ok).length,
        swapMs: Math.round(swapEnd - swapStart),
        requests: all.length,
      },
    };
  } finally {
    await f.close();
  }
}
