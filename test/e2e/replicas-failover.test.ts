import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePinnedRoot } from "../../agent/trust/pinned-root.js";
import { createFleetSim, type FleetSim, type SimDevice } from "../../scripts/bench/fleet-sim/simulator.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { createTopics, DEFAULT_TOPIC_PREFIX } from "../../shared/topics.js";
import { findMosquitto, type MosquittoHandle, startMosquitto } from "../helpers/mosquitto.js";
import { freePort, waitForPort } from "../helpers/ports.js";
import { createTestDatabase, postgresSkipReason, type TestDatabase } from "../helpers/postgres.js";
import { startServerProcess, stopProcess } from "../helpers/server-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { tinySamples, writeTinyModel } from "../helpers/tiny-models.js";

/**
 * Two fleet-server replicas (issue 14) on one shared store and data directory and one external
 * Mosquitto: any replica answers the API, device messages go to one replica of the share group,
 * rollouts run on the lease holder. The holder is SIGKILLed in the middle of a stage's soak; the
 * other takes the lease once it expires and finishes the rollout at the same stage, and no device
 * receives any desired document twice (counted at the devices, retained re-deliveries included).
 * The shared store is PostgreSQL when it is installed (always in CI: EDGEFLEET_REQUIRE_POSTGRES),
 * else the shared data directory's SQLite file.
 */
const N = 8;
const LEASE_TTL_MS = 3000;
const TIMEOUT = 3 * 60_000;
const mosquitto = findMosquitto();
const needed = process.env.EDGEFLEET_REQUIRE_MOSQUITTO === "1";

describe.skipIf(!mosquitto && !needed)("replicas: the rollout leader is killed mid-stage", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let broker: MosquittoHandle;
  const servers: ChildProcess[] = [];
  const apis: ApiClient[] = [];
  let sim: FleetSim;
  let devices: SimDevice[] = [];
  let pg: TestDatabase | undefined;
  let storeArgs: string[] = [];

  const replica = async (): Promise<{ server: ChildProcess; api: ApiClient }> => {
    const port = await freePort();
    const server = startServerProcess(join(tmp.path, "shared"), port, 0, [
      "--mqtt-url",
      broker.url,
      "--share-group",
      "edgefleet",
      "--lease-ttl-ms",
      String(LEASE_TTL_MS),
      ...storeArgs,
    ]);
    servers.push(server);
    await waitForPort(port, 60_000);
    const token = (await readFile(join(tmp.path, "shared", "admin-token"), "utf8")).trim();
    return { server, api: new ApiClient({ baseUrl: `http://127.0.0.1:${port}`, token }) };
  };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-replicas-");
    broker = await startMosquitto(tmp.path);
    if (postgresSkipReason === null) {
      pg = await createTestDatabase();
      storeArgs = ["--database-url", pg.url];
    }
    // The first replica creates the keys and the store; it leads (the first to claim the lease).
    for (let i = 0; i < 2; i++) apis.push((await replica()).api);
    const res = await apis[1]!.importDevices({
      devices: Array.from({ length: N }, (_, i) => ({ id: `rep-${i}`, profile: "generic-x64", tags: { ring: "rep" } })),
    });
    devices = res.results.flatMap((r) => (r.ok ? [{ id: r.id, password: r.password }] : []));
    expect(devices).toHaveLength(N);
    const root = parsePinnedRoot(JSON.parse(await readFile(join(tmp.path, "shared", "root.json"), "utf8")));
    sim = createFleetSim({
      mqttUrl: broker.url,
      topics: createTopics(DEFAULT_TOPIC_PREFIX),
      devices,
      root,
      verifyEvery: 1,
    });
    await sim.connectAll();
    const model = await writeTinyModel(tmp.path, "linear");
    const up = await apis[1]!.upload(model);
    await apis[1]!.createModel({ name: "tiny", version: "1.0.0", upload: up.sha256, samples: tinySamples() });
  }, TIMEOUT);

  afterAll(async () => {
    await sim?.close();
    await Promise.all(servers.map((s) => stopProcess(s, "SIGTERM")));
    await broker?.stop();
    await pg?.drop();
    await tmp?.cleanup();
  });

  it(
    "another replica takes over, finishes the same stage and no document is delivered twice",
    async () => {
      const [leaderApi, standbyApi] = [apis[0]!, apis[1]!];
      // Created on the standby: it forwards the command to the leader with the caller's token.
      const created = await standbyApi.createRollout({
        model: "tiny",
        version: "1.0.0",
        target: { tags: { ring: "rep" } },
        stages: [{ percent: 25, soakSeconds: 8, gates: { minDevices: 2 } }, { percent: 100 }],
        healthPolicy: { probationSeconds: 1 },
      });
      expect(created.devices).toHaveLength(2);
      const soaking = await standbyApi.waitForRollout(created.id, {
        timeoutMs: TIMEOUT,
        intervalMs: 250,
        until: (s) => typeof s.stage?.soakStartedAt === "string",
      });
      expect(soaking.stage?.number).toBe(1);
      expect(await leaderApi.getRollout(created.id)).toMatchObject({ stage: { number: 1 } });

      servers[0]!.kill("SIGKILL");
      await new Promise((r) => servers[0]!.once("exit", r));

      const final = await standbyApi.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      expect(final.status, JSON.stringify(final.devices)).toBe("completed");
      expect(final.counts).toMatchObject({ total: N, committed: N, failed: 0 });
      expect(final.history?.filter((e) => e.type === "stage-advanced")).toHaveLength(1);
      // The stage-1 devices kept their assignment; the others came with stage 2.
      const firstStage = new Set(soaking.devices.map((d) => d.deviceId));
      for (const d of final.devices) expect(d.stage, d.deviceId).toBe(firstStage.has(d.deviceId) ? 0 : 1);

      // Each device: one desired document (seq 1), delivered exactly once, and it verified.
      const delivered = sim.desiredDeliveries();
      for (const d of devices) {
        expect([...(delivered.get(d.id) ?? new Map()).entries()], d.id).toEqual([[1, 1]]);
        expect(((await standbyApi.getDevice(d.id)) as { desiredSeq: number }).desiredSeq, d.id).toBe(1);
      }
      expect(sim.verifyFailures()).toBe(0);
      expect(sim.verified()).toBe(N);
      // The store the replicas shared: PostgreSQL leaves no SQLite file in the data directory.
      expect(existsSync(join(tmp.path, "shared", "fleet.db"))).toBe(pg === undefined);
    },
    TIMEOUT,
  );
});
