import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { type AgentProcess, spawnAgent, waitFor } from "../helpers/agent-process.js";
import { freePort, waitForPort } from "../helpers/ports.js";
import { createTestDatabase, postgresSkipReason, type TestDatabase } from "../helpers/postgres.js";
import { startServerProcess, stopProcess } from "../helpers/server-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";

/**
 * Issue 14: the real fleet server process with `--database-url` on a real PostgreSQL (a fresh,
 * empty database: the server applies the migrations). A device enrolls, a model is pushed, a
 * rollout runs to completion on a real agent; then the server is stopped and started again on the
 * same database and everything is still there. No `fleet.db` is ever written.
 */
const TIMEOUT = 4 * 60_000;

describe.skipIf(postgresSkipReason !== null)("fleet server on PostgreSQL", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>> | undefined;
  let pg: TestDatabase | undefined;
  let server: ChildProcess | undefined;
  let agent: AgentProcess | undefined;

  afterAll(async () => {
    await agent?.kill("SIGTERM");
    if (server) await stopProcess(server, "SIGTERM");
    await pg?.drop();
    await tmp?.cleanup();
  });

  it(
    "enrolls, pushes, rolls out with a real agent, and keeps it all across a restart",
    async () => {
      tmp = await makeTempDir("ef-pgstore-");
      pg = await createTestDatabase();
      const dataDir = join(tmp.path, "server");
      const httpPort = await freePort();
      const mqttPort = await freePort();
      const start = async () => {
        server = startServerProcess(dataDir, httpPort, mqttPort, ["--database-url", pg!.url]);
        await waitForPort(httpPort, 60_000);
      };
      await start();
      const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
      const api = new ApiClient({ baseUrl: `http://127.0.0.1:${httpPort}`, token });

      const { password } = await api.enrollDevice({ id: "pg-a", profile: "generic-x64", tags: { ring: "pg" } });
      agent = await spawnAgent({
        deviceId: "pg-a",
        mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
        password,
        dataDir: join(tmp.path, "pg-a"),
        socketPath: join(tmp.path, "pg-a.sock"),
        rootPath: join(dataDir, "root.json"),
        profile: "generic-x64",
      });
      const up = await api.upload(sileroModelPath());
      await api.createModel({ name: "silero-vad", version: "5.0.0", upload: up.sha256, samples: sileroSamples() });
      const created = await api.createRollout({
        model: "silero-vad",
        version: "5.0.0",
        target: { tags: { ring: "pg" } },
        stages: [{ percent: 100 }],
        healthPolicy: { probationSeconds: 1 },
      });
      const done = await api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 500 });
      expect(done.status, JSON.stringify(done.devices)).toBe("completed");
      expect(done.counts).toMatchObject({ total: 1, committed: 1, failed: 0 });

      await stopProcess(server!, "SIGTERM");
      await start();
      const after = await waitFor("server answers", () => api.getRollout(created.id).catch(() => null), 60_000);
      expect(after.status).toBe("completed");
      expect(after.devices.map((d) => d.deviceId)).toEqual(["pg-a"]);
      expect(((await api.getDevice("pg-a")) as { desiredSeq: number }).desiredSeq).toBe(1);
      // The store was PostgreSQL all along: nothing was written to the embedded file.
      expect(existsSync(join(dataDir, "fleet.db"))).toBe(false);
    },
    TIMEOUT,
  );
});
