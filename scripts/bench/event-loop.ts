import { monitorEventLoopDelay } from "node:perf_hooks";
import { SocketClient } from "../../agent/client/socket-client.js";
import { ratio, summarize, timeSequential } from "./stats.js";
import { closedLoop, startServingFixture } from "./swap-fixture.js";

/**
 * Scenario "event-loop responsiveness" (architecture.md §5: the main process never blocks on inference):
 * `GET /v2/health/ready` latency over the socket with no load (anchor) and while `clients`
 * closed-loop clients keep the model host busy with inference (figure), plus the main process's
 * event-loop delay p99 in both phases.
 */
export async function benchEventLoop(n = 500, clients = 4): Promise<Record<string, unknown>> {
  const f = await startServingFixture();
  try {
    await f.runtime.activate(await f.runtime.load(await f.install("1.0.0")));
    const probe = new SocketClient(f.socketPath);
    const ready = () => probe.raw("GET", "/v2/health/ready");
    const h = monitorEventLoopDelay({ resolution: 1 });

    h.enable();
    const idle = summarize(await timeSequential(n, 50, ready));
    h.disable();
    const idleLoopP99 = h.percentile(99) / 1e6;
    h.reset();

    const load = closedLoop(f.socketPath, clients, (c) => c.inferTensors("silero-vad", f.inputs));
    h.enable();
    const busy = summarize(await timeSequential(n, 50, ready));
    h.disable();
    const samples = await load.stop();
    const busyLoopP99 = h.percentile(99) / 1e6;
    return {
      scenario: "event-loop-responsiveness",
      model: "silero_vad_v5 (fp32), generic-x64 profile",
      anchor: { what: "GET /v2/health/ready, idle", ...idle, eventLoopDelayP99Ms: round(idleLoopP99) },
      figure: {
        what: `GET /v2/health/ready while ${clients} clients infer`,
        ...busy,
        eventLoopDelayP99Ms: round(busyLoopP99),
        inferencesDuring: samples.length,
        inferFailed: samples.filter((s) => !s.ok).length,
      },
      ratioP99: ratio(busy.p99Ms, idle.p99Ms),
    };
  } finally {
    await f.close();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
