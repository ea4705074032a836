import { execFile, execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { ModelCostSchema } from "../../shared/http/cost.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, modelOf, pushTiny, rollout, servingHosts, status, waitStatus } from "./runtime-support.js";

/**
 * Issue 22, cost per prediction, end to end: a real agent and a real model host running the tiny
 * `slow` model (a chain of 256×256 MatMuls, ~10 ms of CPU per run on one x64 core) in onnxruntime.
 * What the agent reports as the version's CPU must match the host process's CPU time as the kernel
 * accounts it (/proc/<pid>/stat utime + stime) over the same window within 10 %; then the server's
 * cost route and `fleetctl models cost` show the figures the device reported, with money at the
 * server's prices.
 */
const ID = "cost-a";
const N = 100;
/** Runs of the tiny model: ~0.4 ms of host CPU each with spinning, so the window holds ~0.6 CPU-s. */
const TINY_N = 1500;
const PRICES = { cpuHour: 0.05, gbTransferred: 0.09, currency: "USD" };
const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));
const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The process's CPU seconds so far (all threads), from the kernel's accounting. */
async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat(5) (utime, stime); `fields` starts at field 3.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

describe("e2e: cost per prediction (issue 22)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;
  const cost = async () => modelOf(await status(client))?.cost?.find((c) => c.version === "1.0.0");
  const infer = (i: number) =>
    client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [i % 5, 1, 2, 3] } });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-cost-");
    h = await startHarness(tmp.path, { prices: PRICES });
    const agent = await h.startAgent(ID, "generic-x64", { cost: { reportSeconds: 1, rssSampleSeconds: 0.5 } });
    await pushTiny(h, tmp.path, "1.0.0", "slow");
    await rollout(h, ID, "1.0.0", { probationSeconds: 0 });
    client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "1.0.0 committed", (s) => modelOf(s)?.committed?.version === "1.0.0");
  }, 180_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  /**
   * `n` inferences on the serving host of `version`, between two quiet reads of /proc and of the
   * agent's reported figure. What the host spends outside inference in the window: decoding request
   * frames and encoding replies, answering the agent's `rss` samples (every 0.5 s here), its idle
   * event loop, and onnxruntime's thread pool spin-waiting after each run (generic-x64 leaves spinning
   * on). The host attributes all of it to the next run (model-host-main.ts `cpuSince`), so the two
   * only differ by what the host spent after the last reply at each end of the window (a spin tail
   * of ~1 ms) and the kernel's accounting granularity (utime and stime in 10 ms ticks).
   */
  async function measure(version: string, n: number) {
    const pid = servingHosts(await status(client)).find((x) => x.version === version)!.pid!;
    const figure = async () => modelOf(await status(client))?.cost?.find((c) => c.version === version);
    for (let i = 0; i < 5; i++) await infer(i);
    const before = { proc: await procCpuSeconds(pid), reported: (await figure())! };
    for (let i = 0; i < n; i++) await infer(i);
    const after = { proc: await procCpuSeconds(pid), reported: (await figure())! };
    const procDelta = after.proc - before.proc;
    const reportedDelta = after.reported.cpuSeconds - before.reported.cpuSeconds;
    console.log(
      `cost e2e ${version}: ${n} runs, reported ${reportedDelta.toFixed(3)} CPU-s, /proc ${procDelta.toFixed(3)} CPU-s ` +
        `(${((reportedDelta / procDelta - 1) * 100).toFixed(1)} %), CLK_TCK ${CLK_TCK}`,
    );
    expect(after.reported.predictions - before.reported.predictions).toBe(n);
    // Meaningful only if the window holds enough CPU for the 10 ms ticks (±2 ticks = ±0.02 s).
    expect(procDelta).toBeGreaterThan(0.2);
    expect(Math.abs(reportedDelta - procDelta) / procDelta).toBeLessThan(0.1);
    return after.reported;
  }

  it(`a ~7 ms model: the CPU the agent reports for ${N} inferences is within 10 % of the host's CPU in /proc`, async () => {
    const reported = await measure("1.0.0", N);
    // Memory was sampled: a host with onnxruntime loaded is tens of MB.
    expect(reported.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(reported.rssMaxBytes).toBeGreaterThanOrEqual(reported.rssBytes!);
    // The same figures on the agent's /metrics.
    const metrics = (await client.raw("GET", "/metrics")).body.toString("utf8");
    expect(metrics).toContain(`edgefleet_cost_predictions{model="${MODEL}",version="1.0.0"} ${reported.predictions}`);
    expect(metrics).toMatch(/edgefleet_cost_cpu_seconds\{model="tiny",version="1\.0\.0"\} \d/);
  }, 120_000);

  it("the server's cost route and fleetctl show the reported figures, bundle bytes and money", async () => {
    const local = (await cost())!;
    // `reported` is republished at most every second after new runs.
    const reported = await waitFor("cost figures in the server's copy of reported", async () => {
      const m = (await h.api.getDevice(ID)).reported?.models.find((x) => x.model === MODEL);
      const c = m?.cost?.find((x) => x.version === "1.0.0");
      return c && c.predictions === local.predictions ? c : null;
    });
    const bundle = (await h.api.getModelVersion(MODEL, "1.0.0")).variants.find((v) => v.variant === "fp32")!.bundle!;

    const view = await h.api.getModelCost(MODEL);
    const v = view.versions.find((x) => x.version === "1.0.0")!;
    expect(v).toMatchObject({ devices: 1, predictions: reported.predictions });
    expect(v.cpuSeconds).toBeCloseTo(reported.cpuSeconds, 5);
    expect(v.cpuSecondsPer1k).toBeCloseTo((reported.cpuSeconds / reported.predictions) * 1000, 5);
    // The agent downloaded the bundle once (retries would only add).
    expect(v.bundleBytes).toBeGreaterThanOrEqual(bundle.size);
    expect(v.money!.cpu).toBeCloseTo((reported.cpuSeconds / 3600) * PRICES.cpuHour, 6);
    expect(v.money!.transfer).toBeCloseTo((v.bundleBytes / 1e9) * PRICES.gbTransferred, 6);
    expect(view.rollouts).toHaveLength(1);
    expect(view.rollouts[0]).toMatchObject({ version: "1.0.0", devices: 1, predictions: reported.predictions });
    expect(view.rollouts[0]!.bundleBytes).toBe(v.bundleBytes);
    await expect(h.api.getModelCost(MODEL, "9.9.9")).rejects.toMatchObject({ code: "NOT_FOUND" });

    const cli = (...args: string[]) =>
      run(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, ...args], {
        env: { ...process.env, EDGEFLEET_TOKEN: h.server.adminToken },
      });
    const json = ModelCostSchema.parse(JSON.parse((await cli("--json", "models", "cost", MODEL, "1.0.0")).stdout));
    expect(json.versions).toEqual([v]);
    const table = (await cli("models", "cost", MODEL)).stdout;
    expect(table).toContain("0.05 USD/CPU-hour");
    expect(table).toMatch(new RegExp(`^1\\.0\\.0\\s+1\\s+${reported.predictions}\\s`, "m"));
    expect(table).toContain(view.rollouts[0]!.rolloutId);
    console.log(table);
  }, 120_000);

  it("a ~0.02 ms model: still within 10 %, because the pool's spin-wait between runs is attributed too", async () => {
    // Measured on 2 cores: counting only around session.run reported 0.111 CPU-s of 0.420 (-74 %)
    // for 1,000 runs of this model; reply to reply, -1.7 %.
    await pushTiny(h, tmp.path, "2.0.0", "linear");
    await rollout(h, ID, "2.0.0", { probationSeconds: 0 });
    await waitStatus(client, "2.0.0 committed", (s) => modelOf(s)?.committed?.version === "2.0.0");
    await measure("2.0.0", TINY_N);
  }, 180_000);
});
