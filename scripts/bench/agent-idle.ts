import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SocketClient } from "../../agent/client/socket-client.js";
import { buildAgent } from "../build/build-agent.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import {
  type BenchAgent,
  type BenchFleet,
  killChild,
  type ProcSample,
  sampleProc,
  spawnBenchAgent,
  startBenchFleet,
  waitUntil,
} from "./fleet-fixture.js";
import { memoryBreakdown, v8HeapFromMetrics } from "./proc-memory.js";
import { ratio } from "./stats.js";

interface Usage {
  rssMeanMiB: number;
  rssMaxMiB: number;
  cpuPercent: number;
}

function usage(samples: ProcSample[], seconds: number): Usage {
  const rss = samples.map((s) => s.rssKiB / 1024);
  const r = (x: number) => Math.round(x * 10) / 10;
  const cpu = samples.at(-1)!.cpuSeconds - samples[0]!.cpuSeconds;
  return {
    rssMeanMiB: r(rss.reduce((a, b) => a + b, 0) / rss.length),
    rssMaxMiB: r(Math.max(...rss)),
    cpuPercent: Math.round((cpu / seconds) * 10000) / 100,
  };
}

/**
 * Scenario "agent idle RSS/CPU" (architecture.md §9): a real `edge-agent` connected to a real fleet server
 * with one committed Silero model, sampled from /proc over an idle window, beside a bare
 * `node -e "setInterval(()=>{},1000)"` process sampled the same way over the same window.
 */
export async function benchAgentIdle(seconds = 20, bundled = false): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), "ef-bench-idle-"));
  let fleet: BenchFleet | undefined;
  let agent: BenchAgent | undefined;
  let nodeFlags: string[] = [];
  const bare = spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { stdio: "ignore" });
  try {
    fleet = await startBenchFleet(root);
    // BENCH_IDLE_BUNDLE=1: the esbuild bundle (npm run build:agent, issue 16) instead of the sources under
    // tsx, with the V8 flags the package's launcher passes; BENCH_AGENT_FLAGS="..." overrides them.
    const built = bundled ? await buildAgent() : undefined;
    nodeFlags = process.env.BENCH_AGENT_FLAGS?.split(" ").filter(Boolean) ?? built?.nodeFlags ?? [];
    agent = await spawnBenchAgent(fleet, root, "idle-1", built?.entry, nodeFlags);
    const up = await fleet.api.upload(sileroModelPath());
    await fleet.api.createModel({ name: "silero-vad", version: "5.0.0", upload: up.sha256, samples: sileroSamples() });
    const rollout = await fleet.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      target: { deviceIds: ["idle-1"] },
      healthPolicy: { probationSeconds: 1 },
    });
    const final = await fleet.api.waitForRollout(rollout.id, { timeoutMs: 120_000 });
    if (final.status !== "completed") throw new Error(`rollout ended ${final.status}`);

    const client = new SocketClient(agent.socketPath);
    const hostPids = await waitUntil("model host pid", async () => {
      const res = await client.raw("GET", "/v1/status");
      const body = JSON.parse(res.body.toString()) as { hosts?: { pid?: number | null }[] };
      const pids = (body.hosts ?? []).map((h) => h.pid).filter((p): p is number => typeof p === "number");
      return pids.length > 0 ? pids : undefined;
    });
    await new Promise((r) => setTimeout(r, 2000)); // let post-commit work settle

    const pids = { agent: agent.proc.pid!, bare: bare.pid!, host: hostPids[0]! };
    const samples: Record<keyof typeof pids, ProcSample[]> = { agent: [], bare: [], host: [] };
    const t0 = Date.now();
    for (let i = 0; i <= seconds; i++) {
      for (const k of Object.keys(pids) as (keyof typeof pids)[]) samples[k].push(await sampleProc(pids[k]));
      if (i < seconds) await new Promise((r) => setTimeout(r, t0 + (i + 1) * 1000 - Date.now()));
    }
    const elapsed = (Date.now() - t0) / 1000;
    // What the resident memory is made of, read once at the end of the idle window (issue 16).
    const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;
    const table = async (pid: number) =>
      Object.fromEntries((await memoryBreakdown(pid)).groups.map((g) => [g.group, mib(g.rssKiB)]));
    const metrics = (await client.raw("GET", "/metrics")).body.toString();
    const breakdown = {
      agent: { smapsMiB: await table(pids.agent), v8MiB: v8HeapFromMetrics(metrics) },
      host: { smapsMiB: await table(pids.host) },
      bare: { smapsMiB: await table(pids.bare) },
    };
    const agentU = usage(samples.agent, elapsed);
    const hostU = usage(samples.host, elapsed);
    const bareU = usage(samples.bare, elapsed);
    const totalRss = Math.round((agentU.rssMeanMiB + hostU.rssMeanMiB) * 10) / 10;
    return {
      scenario: "agent-idle",
      agentEntry: bundled
        ? "dist/agent/edge-agent.js (esbuild bundle, plain node)"
        : "bin/edge-agent.js (sources under tsx)",
      agentNodeFlags: nodeFlags,
      seconds: Math.round(elapsed * 10) / 10,
      model: "silero_vad_v5 (fp32), committed",
      anchor: { what: 'bare node -e "setInterval(()=>{},1000)"', ...bareU },
      agent: { what: "edge-agent process (MQTT connected, socket API, telemetry)", ...agentU },
      host: { what: "model host process (onnxruntime session loaded)", ...hostU },
      figure: {
        what: "agent + model host",
        rssMeanMiB: totalRss,
        cpuPercent: Math.round((agentU.cpuPercent + hostU.cpuPercent) * 100) / 100,
      },
      ratioRss: ratio(totalRss, bareU.rssMeanMiB),
      breakdown,
      agentRatioRss: ratio(agentU.rssMeanMiB, bareU.rssMeanMiB),
    };
  } finally {
    await killChild(bare);
    await agent?.kill();
    await fleet?.close();
    await rm(root, { recursive: true, force: true });
  }
}
