import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/agent-process.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/**
 * A real agent process behind a TCP proxy that resets its MQTT connection and then refuses it
 * (issue 23): the server sees the device go offline (its will), a rollout is started while the
 * device is unreachable, and once the network is back the agent reconnects on its own, receives
 * the retained desired state, downloads, commits and reports: the end-to-end half of
 * test/integration/agent-transport/mqtt-link.test.ts.
 */
describe("agent behind a network that resets and refuses its broker connection", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let proxy: TcpProxy;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-netreset-");
    h = await startHarness(tmp.path);
    proxy = await startTcpProxy({ port: Number(new URL(h.server.mqttUrl).port) });
    await h.startAgent("net-a", "generic-x64", { mqttUrl: proxy.url });
    await h.pushSilero();
  });

  afterAll(async () => {
    await h?.close();
    await proxy?.close();
    await tmp?.cleanup();
  });

  const presence = async () => (await h.api.getDevice("net-a")).presence;

  it("goes offline on the reset, then reconnects by itself and completes a rollout started while it was away", async () => {
    await waitFor("net-a online", async () => (await presence()) === "online", 30_000);
    proxy.refuse();
    proxy.reset();
    await waitFor("net-a offline (its will)", async () => (await presence()) === "offline", 10_000);
    const rollout = await h.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      target: { deviceIds: ["net-a"] },
      healthPolicy: { probationSeconds: 1 },
    });
    // Still refused: the desired state waits retained on the broker, nothing reaches the device.
    expect((await h.api.getRollout(rollout.id)).counts.committed).toBe(0);
    // The agent keeps dialing (its backoff) while refused: at least two attempts after the first connection.
    await waitFor("two refused reconnects", async () => proxy.accepted() >= 3, 20_000);
    proxy.accept();
    const final = await h.api.waitForRollout(rollout.id, { timeoutMs: 60_000 });
    expect(final.status, JSON.stringify(final.devices)).toBe("completed");
    expect(final.counts.committed).toBe(1);
    expect(await presence()).toBe("online");
    const client = await waitForServing(h.agents.get("net-a")!, "silero-vad");
    const ready = await client.raw("GET", "/v2/models/silero-vad/ready");
    expect(ready.status).toBe(200);
  });
});
