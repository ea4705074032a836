import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { waitFor } from "../helpers/agent-process.js";
import { freePort, waitForPort } from "../helpers/ports.js";
import { createTestDatabase, postgresSkipReason, type TestDatabase } from "../helpers/postgres.js";
import { startServerProcess, stopProcess } from "../helpers/server-process.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { makeTempDir } from "../helpers/temp-dir.js";

/**
 * Issue 14: the fleet server (a real process) on PostgreSQL through a TCP proxy the test controls.
 * While the database is unreachable (connections reset, new ones refused) the API answers 503
 * STORE_UNAVAILABLE and refuses devices instead of hanging or dying; once the database is back, the next statement
 * connects again and the same process answers 200.
 */
describe.skipIf(postgresSkipReason !== null)("fleet server when PostgreSQL goes away", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>> | undefined;
  let pg: TestDatabase | undefined;
  let proxy: TcpProxy | undefined;
  let server: ChildProcess | undefined;

  afterAll(async () => {
    if (server) await stopProcess(server, "SIGKILL");
    await proxy?.close();
    await pg?.drop();
    await tmp?.cleanup();
  });

  it("answers 503 STORE_UNAVAILABLE during the outage and 200 again after it, in the same process", async () => {
    tmp = await makeTempDir("ef-pgout-");
    pg = await createTestDatabase();
    const direct = new URL(pg.url);
    proxy = await startTcpProxy({ port: Number(direct.port) });
    const viaProxy = new URL(pg.url);
    viaProxy.port = String(proxy.port);
    const dataDir = join(tmp.path, "server");
    const httpPort = await freePort();
    const mqttPort = await freePort();
    server = startServerProcess(dataDir, httpPort, mqttPort, ["--database-url", viaProxy.toString()]);
    await waitForPort(httpPort, 60_000);
    const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
    const devices = () =>
      fetch(`http://127.0.0.1:${httpPort}/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
    expect((await devices()).status).toBe(200);
    const { password } = await new ApiClient({ baseUrl: `http://127.0.0.1:${httpPort}`, token }).enrollDevice({
      id: "out-a",
      profile: "generic-x64",
    });

    proxy.refuse();
    proxy.reset();
    const down = await devices();
    expect(down.status).toBe(503);
    expect(((await down.json()) as { error?: { code?: string }; code?: string }).error?.code ?? "").toBe(
      "STORE_UNAVAILABLE",
    );

    // Long enough for the server's own timers (rollout scheduler ticks, flushes) to meet the outage too.
    await new Promise((r) => setTimeout(r, 3000));
    // A device connecting meanwhile (the broker's authentication reads the store) is refused, not fatal.
    await expect(
      mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
        clientId: "out-a",
        username: "out-a",
        password,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      }),
    ).rejects.toThrow();
    expect((await devices()).status).toBe(503);
    expect(server.exitCode).toBeNull();

    proxy.accept();
    await waitFor("the API answers again", async () => ((await devices()).status === 200 ? true : null), 30_000);
    expect(server.exitCode).toBeNull();
    // The same credentials connect once the store is back (so the refusal above was the outage).
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: "out-a",
      username: "out-a",
      password,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    await device.endAsync();
  }, 120_000);
});
