import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import mqtt, { type IClientOptions, MqttClient } from "mqtt";
import pino from "pino";
import { loadOrCreateKeys } from "../../fleet-server/keys/key-store.js";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { ApiClient } from "../../scripts/fleetctl/api-client.js";
import { findMosquitto, startDynsecMosquitto } from "../helpers/mosquitto.js";

/**
 * Probes for the broker rules (architecture.md §4, issues 7 and 20 §5): a real fleet server with enrolled
 * devices and their credentials, on either broker:
 * - `aedes`: the embedded broker; server-side observers connect in-process (the only place the
 *   server's identity is accepted);
 * - `mosquitto`: a real Mosquitto started from the files `broker-config --mosquitto` generates
 *   (dynamic security), with the fleet server connected to it as its dynsec admin
 *   (`mosquittoDynsec`), so enrollment and revocation reach it live.
 */

export type BrokerKind = "aedes" | "mosquitto";
export const BROKER_KINDS: readonly BrokerKind[] = ["aedes", "mosquitto"];

export const mosquittoAvailable = findMosquitto() !== null;
if (!mosquittoAvailable && process.env.EDGEFLEET_REQUIRE_MOSQUITTO === "1") {
  throw new Error("EDGEFLEET_REQUIRE_MOSQUITTO=1 but mosquitto is not installed");
}

export interface Creds {
  id: string;
  password: string;
}

export interface BrokerFixture {
  kind: BrokerKind;
  /** The URL devices dial. */
  url: string;
  server: FleetServer;
  api: ApiClient;
  serverCreds: { username: string; password: string };
  /** Every log line of the server at warn level and above (parsed pino JSON). */
  logs: { level: number; msg: string }[];
  enroll(id: string): Promise<Creds>;
  /** A client with the server's identity that does not disturb the server's own session. */
  connectServerSide(clientId: string): Promise<MqttClient>;
  revoke(id: string): Promise<void>;
  /** Mosquitto only: stop it, and start it again on the same port with the state its plugin saved. */
  mosquitto: { stop(): Promise<void>; start(): Promise<void> } | null;
  close(): Promise<void>;
}

/**
 * `preEnrolled` ids are enrolled before the broker starts (on Mosquitto they reach it through the
 * generated bootstrap file, the offline path); later enrollments reach it live.
 */
export async function startBrokerFixture(
  dir: string,
  kind: BrokerKind,
  preEnrolled: readonly string[] = [],
): Promise<BrokerFixture & { preEnrolled: Creds[] }> {
  const dataDir = join(dir, "server");
  const logs: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const log = pino({ level: "warn" }, sink);
  const serverCreds = () =>
    readFile(join(dataDir, "server-mqtt.json"), "utf8").then(
      (t) => JSON.parse(t) as { username: string; password: string },
    );

  let server: FleetServer;
  let mosquitto: { url: string; stop(): Promise<void>; start(): Promise<void> } | null = null;
  const pre: Creds[] = [];
  if (kind === "aedes") {
    server = await startFleetServer({ dataDir, httpPort: 0, mqttPort: 0, log });
    const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
    for (const id of preEnrolled) pre.push((await api.enrollDevice({ id })) as Creds);
  } else {
    if (preEnrolled.length > 0) {
      // Enroll on a server of its own first: the bootstrap file carries these devices.
      const first = await startFleetServer({ dataDir, httpPort: 0, mqttPort: 0, log });
      const api = new ApiClient({ baseUrl: first.httpUrl, token: first.adminToken });
      for (const id of preEnrolled) pre.push((await api.enrollDevice({ id })) as Creds);
      await first.close();
    } else {
      loadOrCreateKeys(dataDir, new Date());
    }
    mosquitto = await startDynsecMosquitto(dataDir, join(dir, "mosquitto"));
    const creds = await serverCreds();
    server = await startFleetServer({
      dataDir,
      httpPort: 0,
      mqttUrl: mosquitto.url,
      mqttUsername: creds.username,
      mqttPassword: creds.password,
      mosquittoDynsec: true,
      log,
    });
  }
  const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
  const creds = await serverCreds();
  const url = mosquitto?.url ?? server.mqttUrl;
  return {
    kind,
    url,
    server,
    api,
    serverCreds: creds,
    logs,
    preEnrolled: pre,
    enroll: async (id) => (await api.enrollDevice({ id })) as Creds,
    async connectServerSide(clientId) {
      if (kind === "mosquitto") return connectOk(url, { clientId, ...creds });
      const stream = server.mqttInProcess;
      if (!stream) throw new Error("no in-process connection");
      const client = new MqttClient(stream, { clientId, ...creds, protocolVersion: 4, reconnectPeriod: 0 });
      await new Promise<void>((resolve, reject) => {
        client.once("connect", () => resolve());
        client.once("error", reject);
      });
      return client;
    },
    revoke: async (id) => void (await revokeViaApi(server, id)),
    mosquitto,
    async close() {
      await server.close();
      await mosquitto?.stop();
    },
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

/** Records every message a server-side observer sees, by topic. */
export async function observe(fx: BrokerFixture, filter: string) {
  const client = await fx.connectServerSide(`observer-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
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

/** Granted QoS per filter (128 = refused); a refusal is also what mqtt.js rejects with. */
export async function subscribeCodes(client: MqttClient, filter: string): Promise<number[]> {
  try {
    const granted = await client.subscribeAsync(filter, { qos: 1 });
    return granted.map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (granted) return granted;
    throw err;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms until true; throws naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolves when the client's connection closes (already closed: at once). */
export function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve();
    client.once("close", () => resolve());
  });
}

export async function revokeViaApi(server: FleetServer, id: string): Promise<unknown> {
  const res = await fetch(`${server.httpUrl}/v1/devices/${encodeURIComponent(id)}/revoke`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ reason: "test" }),
  });
  if (res.status !== 200) throw new Error(`revoke ${id}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** A counter from the server's `/metrics` (0 when absent). */
export async function serverMetric(server: FleetServer, name: string): Promise<number> {
  const res = await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}
