import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient, type RolloutView } from "../../scripts/fleetctl/api-client.js";
import { type AgentProcess, spawnAgent, waitFor } from "../helpers/agent-process.js";
import { freePort, waitForPort } from "../helpers/ports.js";
import { startServerProcess } from "../helpers/server-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";

/**
 * The fleet server as a child process (the `fleet-server` bin), SIGKILLed in the middle of a
 * stage's soak and started again on the same data dir and ports. The rollout must resume at the
 * same stage from SQLite alone, and no device may be assigned twice (one desired document each).
 */
const DEVICES = ["restart-a", "restart-b", "restart-c", "restart-d"];
const TIMEOUT = 6 * 60_000;

describe("server killed mid-stage", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: ChildProcess;
  let api: ApiClient;
  let httpPort: number;
  let mqttPort: number;
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    tmp = await makeTempDir("ef-restart-");
    httpPort = await freePort();
    mqttPort = await freePort();
    server = startServerProcess(join(tmp.path, "server"), httpPort, mqttPort);
    await waitForPort(httpPort, 60_000);
    const token = (await readFile(join(tmp.path, "server", "admin-token"), "utf8")).trim();
    api = new ApiClient({ baseUrl: `http://127.0.0.1:${httpPort}`, token });
    for (const id of DEVICES) {
      const { password } = await api.enrollDevice({ id, profile: "generic-x64", tags: { ring: "restart" } });
      agents.push(
        await spawnAgent({
          deviceId: id,
          mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
          password,
          dataDir: join(tmp.path, id),
          socketPath: join(tmp.path, `${id}.sock`),
          rootPath: join(tmp.path, "server", "root.json"),
          profile: "generic-x64",
        }),
      );
    }
    const up = await api.upload(sileroModelPath());
    await api.createModel({ name: "silero-vad", version: "5.0.0", upload: up.sha256, samples: sileroSamples() });
  }, TIMEOUT);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.kill("SIGTERM")));
    if (server.exitCode === null && server.signalCode === null) {
      server.kill("SIGTERM");
      await new Promise((r) => server.once("exit", r));
    }
    await tmp?.cleanup();
  });

  it(
    "resumes the same stage after SIGKILL and assigns every device exactly once",
    async () => {
      const created = await api.createRollout({
        model: "silero-vad",
        version: "5.0.0",
        target: { tags: { ring: "restart" } },
        stages: [{ percent: 50, soakSeconds: 40, gates: { minDevices: 2 } }, { percent: 100 }],
        healthPolicy: { probationSeconds: 1 },
      });
      // Wait until stage 1's two devices have committed and the soak is running.
      const soaking = await api.waitForRollout(created.id, {
        timeoutMs: TIMEOUT,
        intervalMs: 500,
        until: (s) => s.stage?.soakStartedAt !== null && s.stage?.soakStartedAt !== undefined,
      });
      expect(soaking.stage?.number).toBe(1);
      const before = new Map(soaking.devices.map((d) => [d.deviceId, d]));
      expect(before.size).toBe(2);

      server.kill("SIGKILL");
      await new Promise((r) => server.once("exit", r));
      server = startServerProcess(join(tmp.path, "server"), httpPort, mqttPort);
      await waitForPort(httpPort, 60_000);

      const resumed = await waitFor("server answers", () => api.getRollout(created.id).catch(() => null), 60_000);
      expect(resumed.status).toBe("running");
      expect(resumed.stage).toMatchObject({ number: 1, soakStartedAt: soaking.stage!.soakStartedAt });
      expect(resumed.devices.map((d) => d.deviceId)).toEqual([...before.keys()]);

      const final: RolloutView = await api.waitForRollout(created.id, { timeoutMs: TIMEOUT, intervalMs: 1000 });
      expect(final.status, JSON.stringify(final.devices)).toBe("completed");
      expect(final.counts).toMatchObject({ total: 4, committed: 4, failed: 0 });
      // Stage-1 devices kept their assignment (same stage, same time); the rest came in stage 2.
      for (const d of final.devices) {
        const earlier = before.get(d.deviceId) as
          | (RolloutView["devices"][number] & { assignedAt?: string })
          | undefined;
        const now = d as RolloutView["devices"][number] & { assignedAt?: string };
        if (earlier) expect({ stage: now.stage, at: now.assignedAt }).toEqual({ stage: 0, at: earlier.assignedAt });
        else expect(now.stage).toBe(1);
      }
      expect(final.history?.filter((e) => e.type === "stage-advanced")).toHaveLength(1);
      // One desired document per device, ever: nobody was assigned twice.
      for (const id of DEVICES) {
        const dev = (await api.getDevice(id)) as { desiredSeq: number };
        expect(dev.desiredSeq, id).toBe(1);
      }
    },
    TIMEOUT,
  );
});
