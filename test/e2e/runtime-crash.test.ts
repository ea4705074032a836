import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import type { Harness } from "./fleet-harness.js";
import {
  isAlive,
  MODEL,
  modelOf,
  pushTiny,
  readAgentDb,
  rollout,
  servingHosts,
  startCommittedTiny,
  startLoad,
  status,
  waitStatus,
} from "./runtime-support.js";

/** Issue 3 crash safety with a real agent process: native crashes of model hosts (SIGSEGV). */
const ID = "rt-crash";

describe("runtime e2e: model host crashes", () => {
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

  it("a committed model's host killed with SIGSEGV is restarted; the agent stays up and keeps serving", async () => {
    const agentProc = h.agents.get(ID)!.proc;
    const before = servingHosts(await status(client))[0]!;
    process.kill(before.pid, "SIGSEGV");
    const after = await waitStatus(client, "host restarted", (s) => {
      const host = servingHosts(s)[0];
      return host !== undefined && host.pid !== before.pid && host.restarts === 1;
    });
    expect(agentProc.exitCode).toBeNull();
    expect(isAlive(before.pid)).toBe(false);
    expect(servingHosts(after).map((x) => x.version)).toEqual(["1.0.0"]);
    const res = await client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [1, 2, 3, 4] } });
    expect(res.model_version).toBe("1.0.0");
    expect(modelOf(after)?.state).toBe("committed");
  });

  it("a candidate whose host crashes more than maxHostRestarts times is reverted; the committed model keeps serving", async () => {
    const agentProc = h.agents.get(ID)!.proc;
    await pushTiny(h, tmp.path, "2.0.0", "linear", 2);
    const load = startLoad(client.socketPath, 2, () => [1, 2, 3, 4]);
    await rollout(h, ID, "2.0.0", { probationSeconds: 120, maxHostRestarts: 1 });
    await waitStatus(client, "2.0.0 in probation", (s) => modelOf(s)?.state === "probation");

    // Kill the candidate's host twice (each time after its restart): 2 restarts > maxHostRestarts = 1.
    const killed: number[] = [];
    for (let i = 0; i < 2; i++) {
      const s = await waitStatus(client, `candidate host up (${i})`, (x) => {
        const host = servingHosts(x)[0];
        return modelOf(x)?.state === "probation" && host?.version === "2.0.0" && !killed.includes(host.pid);
      });
      const pid = servingHosts(s)[0]!.pid;
      killed.push(pid);
      process.kill(pid, "SIGSEGV");
    }
    const after = await waitStatus(client, "2.0.0 reverted", (s) => modelOf(s)?.state === "reverted");
    const n = load.count();
    while (load.count() < n + 40) await new Promise((r) => setTimeout(r, 50));
    const records = (await load.stop()).flat();

    expect(agentProc.exitCode).toBeNull();
    const m = modelOf(after)!;
    expect(m.error?.code).toBe("HOST_CRASHED");
    expect(m.probation).toMatchObject({ verdict: "failed", reason: "HOST_CRASHED" });
    expect(m.probation!.candidate.hostRestarts).toBeGreaterThanOrEqual(2);
    expect(servingHosts(after).map((x) => x.version)).toEqual(["1.0.0"]);
    for (const pid of killed) expect(isAlive(pid)).toBe(false);
    // Only requests caught on the crashing candidate may fail; after the revert every one succeeds on 1.0.0.
    const failed = records.filter((r) => !r.ok);
    expect(failed.filter((r) => !r.error?.startsWith("HOST_CRASHED:")).map((r) => r.error)).toEqual([]);
    for (const worker of load.records) {
      const tail = worker.slice(-15);
      expect(tail.every((r) => r.ok && r.version === "1.0.0")).toBe(true);
    }
    expect(readAgentDb(h.agents.get(ID)!.config.dataDir).bad.map((b) => b.reason)).toContain("HOST_CRASHED");
  });
});
