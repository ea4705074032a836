import { join } from "node:path";
import { pino } from "pino";
import { SocketClient } from "../../agent/client/socket-client.js";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { type AgentProcess, spawnAgent, waitFor } from "../helpers/agent-process.js";

/**
 * End-to-end harness: a real fleet server (in this process, so tests can read its counters),
 * real agent processes started through the `edge-agent` bin, real sockets and SQLite files.
 */
export interface Harness {
  root: string;
  server: FleetServer;
  api: ApiClient;
  agents: Map<string, AgentProcess>;
  startAgent(id: string, profile: string, extra?: Record<string, unknown>): Promise<AgentProcess>;
  /**
   * Stops the agent and starts it again with the same config; `opts` adds environment (e.g. a fake
   * NOTIFY_SOCKET) or another entry file (the esbuild bundle).
   */
  restartAgent(id: string, signal?: NodeJS.Signals, opts?: Parameters<typeof spawnAgent>[1]): Promise<AgentProcess>;
  pushSilero(version?: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(
  root: string,
  opts: {
    mqttUrl?: string;
    deviceBandwidthBytesPerSec?: number;
    /** The server's credentials on an external broker administered through dynamic security. */
    mosquittoDynsec?: { username: string; password: string };
    /** Prices for cost per prediction (issue 22). */
    prices?: { cpuHour: number; gbTransferred: number; currency: string };
  } = {},
): Promise<Harness> {
  const server = await startFleetServer({
    dataDir: join(root, "server"),
    httpPort: 0,
    mqttPort: 0,
    // Every JSON answer is checked against the HTTP contract (docs/http-api.md), raw fetches included.
    checkResponses: true,
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    ...(opts.mqttUrl !== undefined ? { mqttUrl: opts.mqttUrl } : {}),
    ...(opts.deviceBandwidthBytesPerSec !== undefined
      ? { deviceBandwidthBytesPerSec: opts.deviceBandwidthBytesPerSec }
      : {}),
    ...(opts.prices ? { prices: opts.prices } : {}),
    ...(opts.mosquittoDynsec
      ? {
          mosquittoDynsec: true,
          mqttUsername: opts.mosquittoDynsec.username,
          mqttPassword: opts.mosquittoDynsec.password,
        }
      : {}),
  });
  const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
  const agents = new Map<string, AgentProcess>();
  const passwords = new Map<string, string>();
  const configs = new Map<string, Parameters<typeof spawnAgent>[0] & Record<string, unknown>>();

  const h: Harness = {
    root,
    server,
    api,
    agents,
    async startAgent(id, profile, extra = {}) {
      if (!passwords.has(id)) {
        const { password } = await api.enrollDevice({ id, profile, tags: { suite: "e2e" } });
        passwords.set(id, password);
      }
      const config = {
        deviceId: id,
        mqttUrl: server.mqttUrl,
        password: passwords.get(id)!,
        dataDir: join(root, id),
        socketPath: join(root, `${id}.sock`),
        rootPath: server.rootJsonPath,
        profile,
        ...extra,
      };
      configs.set(id, config);
      const agent = await spawnAgent(config);
      agents.set(id, agent);
      return agent;
    },
    async restartAgent(id, signal = "SIGTERM", opts = {}) {
      await agents.get(id)?.kill(signal);
      const agent = await spawnAgent(configs.get(id)!, opts);
      agents.set(id, agent);
      return agent;
    },
    async pushSilero(version = "5.0.0") {
      const up = await api.upload(sileroModelPath());
      await api.createModel({ name: "silero-vad", version, upload: up.sha256, samples: sileroSamples() });
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.kill("SIGTERM")));
      await server.close();
    },
  };
  return h;
}

/** Waits until the agent's socket answers infer-ready for `model` (serving a committed or candidate version). */
export async function waitForServing(agent: AgentProcess, model: string, timeoutMs = 60_000): Promise<SocketClient> {
  const client = new SocketClient(agent.config.socketPath);
  await waitFor(
    `${agent.config.deviceId} serving ${model}`,
    async () => {
      const res = await client.raw("GET", `/v2/models/${model}/ready`);
      return res.status === 200;
    },
    timeoutMs,
  );
  return client;
}
