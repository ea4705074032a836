import { type ChildProcess, spawn } from "node:child_process";
import os from "node:os";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinySamples, writeTinyModel } from "../helpers/tiny-models.js";
import type { Harness } from "./fleet-harness.js";
import { startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, modelOf, rollout, startLoad, status, waitStatus } from "./runtime-support.js";

/**
 * Issue 20 §6 with a real agent process: the latency gate compares like with like. The committed
 * version's baseline is measured on an idle device; then, mid-probation, busy child processes load
 * every CPU. A candidate of equal speed commits (the gate pairs its runs with the previous version's
 * under the same load); one three times slower is still reverted. No wall-clock assertion: the
 * verdicts are the agent's, the load is real.
 */
const ID = "pb-latency";

/** Busy processes spinning on every CPU (four times over), until `stop()`. */
function startCpuLoad(): { stop(): Promise<void> } {
  const procs: ChildProcess[] = Array.from({ length: os.availableParallelism() * 4 }, () =>
    spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }),
  );
  return {
    async stop() {
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null || p.signalCode !== null) return resolve();
              p.once("exit", () => resolve());
              p.kill("SIGKILL");
            }),
        ),
      );
    },
  };
}

/**
 * The tiny `slow` model: `depth` chained 256×256 MatMuls plus a fixed part; 4× the depth measured
 * 3.3× the execution time on one thread (2.6× for 3× the depth).
 */
async function pushSlow(h: Harness, dir: string, version: string, scale: number, depth: number) {
  const path = await writeTinyModel(dir, "slow", { scale, slowDepth: depth });
  const up = await h.api.upload(path);
  await h.api.createModel({ name: MODEL, version, upload: up.sha256, samples: tinySamples(), quantize: "none" });
}

describe("paired latency gate under a load that starts mid-probation (issue 20 §6)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;
  let load: { stop(): Promise<void> } | null = null;
  const BASE_DEPTH = 24;
  const policy = { probationSeconds: 6, maxP95LatencyRatio: 2, maxErrorRatePercent: 5 };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-pb-lat-");
    h = await startHarness(tmp.path);
    const agent = await h.startAgent(ID, "generic-x64");
    await pushSlow(h, tmp.path, "1.0.0", 1, BASE_DEPTH);
    await rollout(h, ID, "1.0.0", { probationSeconds: 0 });
    client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "1.0.0 committed", (s) => modelOf(s)?.committed?.version === "1.0.0");
  }, 300_000);

  afterEach(async () => {
    await load?.stop();
    load = null;
  });

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  /** Rolls `version` out with one client sending requests; loads every CPU 1.5 s into probation. */
  async function probationUnderLoad(version: string) {
    const traffic = startLoad(client.socketPath, 1, () => [1, 2, 3, 4]);
    await rollout(h, ID, version, policy);
    await waitStatus(client, `${version} in probation`, (s) => modelOf(s)?.state === "probation");
    await new Promise((r) => setTimeout(r, 1_500));
    load = startCpuLoad();
    const after = await waitStatus(
      client,
      `${version} judged`,
      (s) => modelOf(s)?.committed?.version === version || modelOf(s)?.state === "reverted",
      180_000,
    );
    await load.stop();
    load = null;
    const records = (await traffic.stop()).flat();
    return { m: modelOf(after)!, records };
  }

  it("a candidate of equal speed commits", async () => {
    await pushSlow(h, tmp.path, "2.0.0", 2, BASE_DEPTH);
    const { m, records } = await probationUnderLoad("2.0.0");
    const paired = m.probation?.pairedLatency;
    console.log(
      `equal speed: baseline p95 ${m.probation?.baseline?.p95Ms} ms (idle), candidate p95 ${m.probation?.candidate.p95Ms} ms, paired ${JSON.stringify(paired)}`,
    );
    expect(m.probation?.verdict).toBe("passed");
    expect(m.committed?.version).toBe("2.0.0");
    expect(m.state).toBe("committed");
    expect(paired?.pairs).toBeGreaterThanOrEqual(15);
    expect(records.filter((r) => !r.ok)).toEqual([]);
  });

  it("a candidate over three times slower is still reverted with LATENCY_REGRESSION", async () => {
    await pushSlow(h, tmp.path, "3.0.0", 3, BASE_DEPTH * 4);
    // Whatever was committed before (2.0.0 after the test above, 1.0.0 when this test runs alone).
    const before = modelOf(await status(client))?.committed?.version;
    expect(before).toBeDefined();
    const { m } = await probationUnderLoad("3.0.0");
    const paired = m.probation?.pairedLatency;
    console.log(`3x slower: paired ${JSON.stringify(paired)}; ${m.probation?.message}`);
    expect(m.state).toBe("reverted");
    expect(m.error?.code).toBe("LATENCY_REGRESSION");
    expect(m.probation).toMatchObject({ verdict: "failed", reason: "LATENCY_REGRESSION" });
    expect((m.probation as { message?: string }).message).toContain("back-to-back runs");
    expect(m.committed?.version).toBe(before);
  });
});
