import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { drawFrame, seeded, serverGet } from "./telemetry-support.js";

const ID = "e2e-noloss";
const ROUNDS = 12;

interface DeviceTelemetry {
  total: number;
  records: { seq: number }[];
  stats: { stored: number; duplicates: number; batches: number; rejected: number; deviceDropped: number };
}

/**
 * Issue 6 "zero loss, zero duplicates": a real agent process in `full` durability records
 * inferences over its socket while the broker is down and while it flushes after the broker
 * comes back; it is SIGKILLed at random points of both ≥ 10 times. At the end the server holds
 * exactly the inferences that were answered: none lost, none stored twice.
 *
 * Kills land between requests (after an answer, so the count of answered requests is exact), at
 * random delays that fall on group commits of other rows, drift/flush work and batches in
 * flight. `full` mode answers a request only after its row is fsynced, so an answered request
 * is on disk whenever the kill comes.
 */
describe("telemetry e2e: no loss and no duplicates across SIGKILLs and broker outages", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let server: FleetServer | null = null;
  let mqttPort = 0;

  const brokerUp = async () => {
    if (server) return;
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort,
      log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    });
  };
  const brokerDown = async () => {
    await server?.close();
    server = null;
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-tnl-");
    h = await startHarness(tmp.path);
    mqttPort = Number(new URL(h.server.mqttUrl).port);
    await h.startAgent(ID, "generic-x64", {
      // Small batches and a short cron so flushes are long enough, and frequent enough, to be hit.
      telemetry: { durability: "full", batchMaxRecords: 20, window: 2, flushCron: "*/1 * * * * *", ackTimeoutMs: 2000 },
    });
    await h.pushSilero();
    const rollout = await h.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      target: { deviceIds: [ID] },
      healthPolicy: { probationSeconds: 1 },
    });
    expect((await h.api.waitForRollout(rollout.id, { timeoutMs: 120_000 })).status).toBe("completed");
    await waitForServing(h.agents.get(ID)!, "silero-vad");
    // From here on the test owns the server's lifecycle (same data dir, same broker port).
    server = h.server;
  }, 180_000);

  afterAll(async () => {
    await h?.close();
    await brokerDown();
    await tmp?.cleanup();
  });

  it(`records N inferences through ${ROUNDS} SIGKILLs during recording (broker down) and during flush (broker up); the server ends with exactly N`, async () => {
    const random = seeded(2024);
    let answered = 0;
    let killsDuringFlush = 0;
    await brokerDown();

    for (let round = 0; round < ROUNDS; round++) {
      const flushing = round >= ROUNDS / 2;
      const agent = h.agents.get(ID)!;
      const client = await waitForServing(agent, "silero-vad");
      if (flushing) {
        await brokerUp();
        await waitFor("agent connected", async () => {
          const s = await client.json<{ connection: string }>("GET", "/v1/status");
          return s.connection === "connected";
        });
      }
      const n = 10 + Math.floor(random() * 30);
      for (let i = 0; i < n; i++) {
        await client.inferTensors("silero-vad", drawFrame(random));
        answered++;
      }
      if (flushing) {
        const t = await client.json<{ rows: number; inFlight: number }>("GET", "/v1/telemetry");
        if (t.rows > 0 || t.inFlight > 0) killsDuringFlush++;
      }
      await new Promise((r) => setTimeout(r, Math.floor(random() * (flushing ? 150 : 40))));
      await h.restartAgent(ID, "SIGKILL");
      // Every other flushing round the broker goes down again right after the kill.
      if (flushing && round % 2 === 1) await brokerDown();
    }

    await brokerUp();
    const client = await waitForServing(h.agents.get(ID)!, "silero-vad");
    const final = await waitFor(
      "every answered inference on the server",
      async () => {
        const local = await client.json<{ rows: number; pending: number; dropped: number }>("GET", "/v1/telemetry");
        const t = await serverGet<DeviceTelemetry>(
          server!,
          `/v1/devices/${ID}/telemetry?kind=inference&source=api&limit=5000`,
        );
        return local.rows === 0 && t.total >= answered ? { t, local } : undefined;
      },
      120_000,
    );
    expect(final.t.total).toBe(answered);
    const seqs = final.t.records.map((r) => r.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(final.local.dropped).toBe(0);
    expect(final.t.stats.rejected).toBe(0);
    expect(final.t.stats.deviceDropped).toBe(0);
    // The test must really have killed agents with a backlog in flight, not only idle ones.
    expect(killsDuringFlush).toBeGreaterThan(0);
    console.log(
      JSON.stringify({
        answered,
        kills: ROUNDS,
        killsDuringFlush,
        duplicatesDropped: final.t.stats.duplicates,
        batches: final.t.stats.batches,
      }),
    );
  }, 600_000);
});
