import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { Harness } from "./fleet-harness.js";
import {
  expectedY,
  isAlive,
  type LoadRecord,
  MODEL,
  modelOf,
  pushTiny,
  readAgentDb,
  rollout,
  servingHosts,
  startCommittedTiny,
  startLoad,
  status,
  versionRuns,
  waitStatus,
} from "./runtime-support.js";

/**
 * Issue 3 through the real updater path: a fleet server publishes new versions, a real agent process
 * receives desired states over MQTT and swaps model host processes while several local clients keep
 * sending infer requests over its Unix socket.
 */
const ID = "rt-swap";
const SCALE: Record<string, number> = { "1.0.0": 1, "2.0.0": 2, "3.0.0": 3, "4.0.0": 2 };

/** Every successful response carries the output of the version it is labelled with. */
function expectLabelsMatchOutputs(records: LoadRecord[]) {
  const wrong = records.filter((r) => {
    if (!r.ok || r.y === null) return false;
    if (r.x.some((v) => v <= 0) && r.version === "3.0.0") return r.y.some((v) => v !== null); // NaN → null in JSON
    return JSON.stringify(r.y) !== JSON.stringify(expectedY(SCALE[r.version!]!, r.x));
  });
  expect(wrong.slice(0, 3)).toEqual([]);
}

describe("runtime e2e: hot swap under load through the updater", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let tmp: typeof env.tmp;
  let h: Harness;
  let client: SocketClient;

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    ({ tmp, h } = env);
    client = env.client;
  }, 180_000);

  afterAll(async () => {
    await env?.close();
  });

  it("rolls out 2.0.0 under 4 concurrent clients: zero failures, labels match outputs, versions never go back", async () => {
    await pushTiny(h, tmp.path, "2.0.0", "linear", 2);
    const load = startLoad(client.socketPath, 4, (i) => [1 + (i % 3), 2, 3, 4]);
    await waitFor(() => load.count() >= 40);
    await rollout(h, ID, "2.0.0", { probationSeconds: 3, probationRequests: 20 });

    // Blue-green: during probation the previous host stays warm (unrouted) beside the candidate.
    const during = await waitStatus(client, "2.0.0 in probation", (s) => modelOf(s)?.state === "probation");
    const warm = during.hosts.find((x) => x.version === "1.0.0");
    expect(warm?.state).toBe("loaded");
    expect(servingHosts(during).map((x) => x.version)).toEqual(["2.0.0"]);

    const after = await waitStatus(client, "2.0.0 committed", (s) => modelOf(s)?.state === "committed");
    const n = load.count();
    await waitFor(() => load.count() >= n + 40);
    const records = (await load.stop()).flat();

    expect(records.filter((r) => !r.ok)).toEqual([]);
    expectLabelsMatchOutputs(records);
    for (const worker of load.records) expect(versionRuns(worker)).toEqual(["1.0.0", "2.0.0"]);
    expect(records.filter((r) => r.version === "2.0.0").length).toBeGreaterThanOrEqual(40);

    const m = modelOf(after)!;
    expect(m.committed?.version).toBe("2.0.0");
    expect(m.probation).toMatchObject({
      verdict: "passed",
      candidate: { version: "2.0.0", nonFinite: 0 },
      baseline: { version: "1.0.0" },
    });
    expect(m.probation!.candidate.requests).toBeGreaterThanOrEqual(20);
    expect(m.probation!.baseline!.p95Ms).not.toBeNull();
    // At commit the warm previous host is stopped: its process is gone.
    expect(after.hosts.map((x) => x.version)).toEqual(["2.0.0"]);
    await expect.poll(() => isAlive(warm!.pid), { timeout: 10_000 }).toBe(false);
  });

  it("a candidate emitting NaN on real traffic is reverted (NON_FINITE_OUTPUT) under load with zero failed requests", async () => {
    await pushTiny(h, tmp.path, "3.0.0", "nonFinite", 3);
    // Every 4th request has a negative value: the golden samples never do, so the smoke test passes.
    const load = startLoad(client.socketPath, 4, (i) => (i % 4 === 3 ? [-1, 2, 3, 4] : [1, 2, 3, 4]));
    await waitFor(() => load.count() >= 40);
    await rollout(h, ID, "3.0.0", { probationSeconds: 30 });
    const after = await waitStatus(client, "3.0.0 reverted", (s) => modelOf(s)?.state === "reverted");
    const n = load.count();
    await waitFor(() => load.count() >= n + 40);
    const records = (await load.stop()).flat();

    expect(records.filter((r) => !r.ok)).toEqual([]);
    expectLabelsMatchOutputs(records);
    expect(records.some((r) => r.version === "3.0.0")).toBe(true);
    for (const worker of load.records) {
      // Forward to the candidate once, back to the committed version once, never interleaved.
      expect([["2.0.0", "3.0.0", "2.0.0"], ["2.0.0"]]).toContainEqual(versionRuns(worker));
      expect(worker.at(-1)?.version).toBe("2.0.0");
    }

    const m = modelOf(after)!;
    expect(m.error?.code).toBe("NON_FINITE_OUTPUT");
    expect(m.committed?.version).toBe("2.0.0");
    expect(m.probation).toMatchObject({ verdict: "failed", reason: "NON_FINITE_OUTPUT" });
    expect(m.probation!.candidate.nonFinite).toBeGreaterThan(0);
    expect(servingHosts(after).map((x) => x.version)).toEqual(["2.0.0"]);
    expect(after.hosts).toHaveLength(1);
    const db = readAgentDb(h.agents.get(ID)!.config.dataDir);
    expect(db.bad.map((b) => b.reason)).toContain("NON_FINITE_OUTPUT");
    expect(db.models).toEqual([expect.objectContaining({ state: "reverted" })]);
    expect(db.models[0]!.committed?.version).toBe("2.0.0");
  });

  it("a slow candidate (p95 > ratio x previous) is reverted with LATENCY_REGRESSION, with probes when idle", async () => {
    await pushTiny(h, tmp.path, "4.0.0", "slow", 2);
    await rollout(h, ID, "4.0.0", { probationSeconds: 2, probationRequests: 15, maxP95LatencyRatio: 2 });
    const after = await waitStatus(
      client,
      "4.0.0 reverted",
      (s) => modelOf(s)?.state === "reverted" && modelOf(s)?.candidate?.version === "4.0.0",
    );
    const m = modelOf(after)!;
    expect(m.error?.code).toBe("LATENCY_REGRESSION");
    expect(m.probation).toMatchObject({ verdict: "failed", reason: "LATENCY_REGRESSION" });
    const p = m.probation!;
    // No client sent anything: the window was filled by synthetic probes from the samples.
    expect(p.candidate.requests).toBeGreaterThanOrEqual(15);
    expect(p.candidate.p95Ms!).toBeGreaterThan(2 * p.baseline!.p95Ms!);
    console.log(`slow candidate p95 ${p.candidate.p95Ms} ms vs committed ${p.baseline!.p95Ms} ms`);
    const res = await client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] } });
    expect(res.model_version).toBe("2.0.0");
    expect(servingHosts(await status(client))).toHaveLength(1);
  });
});

async function waitFor(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 50));
}
