import { readFile, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { generateMosquittoFiles } from "../../fleet-server/broker/broker-config.js";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { spawnMosquitto } from "../helpers/mosquitto.js";
import { freePort } from "../helpers/ports.js";

/**
 * Probes for the broker rules (DESIGN §4, issue 7): a real fleet server (embedded aedes) with
 * enrolled devices, their credentials, an observer connected with the server's own credentials
 * (sees every device topic), and a real Mosquitto started from the files `broker-config` generates.
 */

export interface Creds {
  id: string;
  password: string;
}

export interface BrokerFixture {
  server: FleetServer;
  api: ApiClient;
  serverCreds: { username: string; password: string };
  enroll(id: string): Promise<Creds>;
  close(): Promise<void>;
}

export async function startBrokerFixture(dir: string): Promise<BrokerFixture> {
  const server = await startFleetServer({
    dataDir: join(dir, "server"),
    httpPort: 0,
    mqttPort: 0,
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
  });
  const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
  const serverCreds = JSON.parse(await readFile(join(dir, "server", "server-mqtt.json"), "utf8")) as {
    username: string;
    password: string;
  };
  return {
    server,
    api,
    serverCreds,
    enroll: async (id) => (await api.enrollDevice({ id })) as Creds,
    close: () => server.close(),
  };
}

/** Connects, or resolves with the refusal (CONNACK error or a close before CONNACK). */
export function tryConnect(url: string, opts: IClientOptions): Promise<MqttClient | Error> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once("connect", () => resolve(client));
    client.once("error", (err) => {
      client.end(true);
      resolve(err);
    });
    client.once("close", () => {
      if (!client.connected) resolve(new Error("connection closed before CONNACK"));
    });
  });
}

export async function connectOk(url: string, opts: IClientOptions): Promise<MqttClient> {
  const c = await tryConnect(url, opts);
  if (c instanceof Error) throw c;
  return c;
}

/** Records every message an observer sees, by topic. */
export async function observe(url: string, creds: { username: string; password: string }, filter: string) {
  const client = await connectOk(url, {
    clientId: `observer-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
    ...creds,
  });
  const seen: { topic: string; payload: string; retain: boolean }[] = [];
  client.on("message", (topic, payload, packet) =>
    seen.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  await client.subscribeAsync(filter, { qos: 1 });
  return {
    client,
    seen,
    on: (topic: string) => seen.filter((m) => m.topic === topic),
    close: () => client.endAsync(true),
  };
}

/** Granted QoS per filter (128 = refused). */
export async function subscribeCodes(client: MqttClient, filter: string): Promise<number[]> {
  const granted = await client.subscribeAsync(filter, { qos: 1 });
  return granted.map((g) => g.qos);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RealMosquitto {
  url: string;
  dir: string;
  /** Regenerates the files from the server's data dir and makes Mosquitto reload them (SIGHUP). */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** Mosquitto configured only by the files `fleet-server broker-config --mosquitto` writes. */
export async function startSecuredMosquitto(dataDir: string, dir: string): Promise<RealMosquitto> {
  const port = await freePort();
  const gen = () => generateMosquittoFiles({ dataDir, outDir: dir, listener: { port, host: "127.0.0.1" } });
  const files = gen();
  // The generated fragment is the whole config, plus test-only settings (no persistence on disk).
  const conf = join(dir, "run.conf");
  // Run as ourselves: as root, Mosquitto would drop to the `mosquitto` user, which cannot read the
  // 0600 passwd file in our temp dir (in production: chown the files to the broker's user).
  const user = userInfo().username;
  await writeFile(conf, `${await readFile(files.conf, "utf8")}persistence false\nuser ${user}\n`);
  const proc = await spawnMosquitto(conf, port);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    async reload() {
      gen();
      proc.kill("SIGHUP");
      await sleep(500);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}
