import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { type Harness, waitForServing } from "./fleet-harness.js";
import {
  type AgentStatus,
  childPids,
  isAlive,
  MODEL,
  modelOf,
  pushTiny,
  readAgentDb,
  rollout,
  servingHosts,
  startCommittedTiny,
  status,
  waitStatus,
} from "./runtime-support.js";

/**
 * Issue 3: the agent SIGKILLed at each update step comes back with exactly one model serving — the
 * committed one, or the candidate under probation (its restart counted against it) — and finishes
 * the update with SQLite consistent. The agent pauses before the step (fault injection via
 * EDGEFLEET_FAULT_PAUSE_BEFORE_STEP), so the kill lands in that step deterministically.
 */
const ID = "rt-kill";
const STEPS = ["downloading", "staging", "loading", "smoke-testing", "swapping", "probation"] as const;

describe("runtime e2e: SIGKILL of the agent at each update step", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let tmp: typeof env.tmp;
  let h: Harness;

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    ({ tmp, h } = env);
  }, 180_000);

  afterAll(async () => {
    delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
    await env?.close();
  });

  // Versions grow with the step, so any subset of the steps runs in order; what serves before the
  // update is read from the agent, not assumed from the step before (each test runs alone, issue 23).
  it.each(STEPS.map((step, i) => ({ step, version: `${i + 2}.0.0` })))(
    "killed at $step: restarts with exactly one version serving and finishes the update",
    async ({ step, version }) => {
      process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP = `${step}:600000`;
      let agent = await h.restartAgent(ID);
      let client = await waitForServing(agent, MODEL, 120_000);
      const previous = modelOf(await status(client))?.committed?.version;
      expect(previous, "a committed version serves before the update").toBeDefined();
      await pushTiny(h, tmp.path, version, "linear", 1);
      await rollout(h, ID, version, { probationSeconds: 1, maxHostRestarts: 2 });
      const at = await waitStatus(client, `${version} at ${step}`, (s) => modelOf(s)?.state === step);
      expect(servingHosts(at)).toHaveLength(1);

      const hosts = await childPids(agent.proc.pid!);
      expect(hosts.length).toBeGreaterThanOrEqual(1);
      await agent.kill("SIGKILL");
      // Hosts notice their parent is gone (IPC disconnect) and exit: no orphaned model processes.
      await expect.poll(() => hosts.filter(isAlive), { timeout: 20_000 }).toEqual([]);

      delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
      agent = await h.restartAgent(ID);
      client = await waitForServing(agent, MODEL, 120_000);
      // From the moment the socket answers until the update is done, exactly one version serves.
      const seen: AgentStatus[] = [];
      const done = await waitStatus(client, `${version} committed after restart`, (s) => {
        seen.push(s);
        return modelOf(s)?.state === "committed" && modelOf(s)?.committed?.version === version;
      });
      expect(seen.filter((s) => servingHosts(s).length !== 1)).toEqual([]);
      for (const s of seen) {
        const serving = servingHosts(s)[0]!.version;
        expect([previous, version]).toContain(serving);
      }
      expect(servingHosts(done).map((x) => x.version)).toEqual([version]);
      expect(done.hosts).toHaveLength(1);

      const db = readAgentDb(agent.config.dataDir);
      expect(db.models).toEqual([expect.objectContaining({ model: MODEL, state: "committed", candidate: null })]);
      expect(db.models[0]!.committed?.version).toBe(version);
      expect(db.bad).toEqual([]);
      if (step === "probation") {
        // The restart during probation was counted against the candidate (and it still passed: 1 <= 2).
        expect(modelOf(done)!.probation).toMatchObject({ verdict: "passed" });
        expect(modelOf(done)!.probation!.candidate.hostRestarts).toBe(1);
      }
      const res = await new SocketClient(agent.config.socketPath).inferTensors(MODEL, {
        x: { datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] },
      });
      expect(res.model_version).toBe(version);
      expect((await status(client)).models).toHaveLength(1);
    },
    240_000,
  );
});
