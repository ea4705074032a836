import { execFile } from "node:child_process";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { createTopics } from "../../shared/topics.js";
import { waitFor } from "../helpers/agent-process.js";
import { findMosquitto, spawnMosquitto } from "../helpers/mosquitto.js";
import { freePort } from "../helpers/ports.js";
import { parsePrometheus, promValue } from "../helpers/prometheus.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness } from "./fleet-harness.js";

/**
 * Issue 20 §4: the server's broker link is part of its health. A real Mosquitto is stopped and
 * started again under a running fleet server with a real agent: health, readiness, device presence
 * and the metric say so while it is down, and the retained state re-establishes the truth after.
 */
const available = findMosquitto() !== null;
if (!available && process.env.EDGEFLEET_REQUIRE_MOSQUITTO === "1") {
  throw new Error("EDGEFLEET_REQUIRE_MOSQUITTO=1 but mosquitto is not installed");
}

const run = promisify(execFile);
const FLEETCTL = fileURLToPath(new URL("../../bin/fleetctl.js", import.meta.url));
const topics = createTopics();

interface Probe {
  status: number;
  body: { status: string; checks: { broker: { status: string; kind: string; since: string; reason?: string } } };
}
const probe = async (server: FleetServer, path: string): Promise<Probe> => {
  const res = await fetch(`${server.httpUrl}${path}`);
  return { status: res.status, body: (await res.json()) as Probe["body"] };
};
const brokerMetrics = async (server: FleetServer) => {
  const m = parsePrometheus(await (await fetch(`${server.httpUrl}/metrics`)).text());
  return {
    connected: promValue(m, "edgefleet_broker_connected"),
    disconnects: promValue(m, "edgefleet_broker_disconnects_total"),
  };
};

/** The retained message on `topic` (null when none), read by a fresh client. */
async function retained(url: string, topic: string): Promise<string | null> {
  const c = await mqtt.connectAsync(url, { clientId: `probe-${process.hrtime.bigint()}`, reconnectPeriod: 0 });
  try {
    const got = new Promise<string | null>((resolve) => {
      c.on("message", (t, payload, packet) => {
        if (t === topic && packet.retain) resolve(payload.length > 0 ? payload.toString("utf8") : null);
      });
      setTimeout(() => resolve(null), 1_000);
    });
    await c.subscribeAsync(topic, { qos: 1 });
    return await got;
  } finally {
    await c.endAsync();
  }
}

describe.skipIf(!available)("the fleet server while its Mosquitto is down and back", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let brokerTmp: Awaited<ReturnType<typeof makeTempDir>>;
  let conf: string;
  let port: number;
  let url: string;
  let mosquitto: Awaited<ReturnType<typeof spawnMosquitto>> | null = null;
  let h: Harness;
  let bare: MqttClient | null = null;
  const stopMosquitto = () =>
    new Promise<void>((resolve) => {
      const p = mosquitto;
      if (!p || p.exitCode !== null) return resolve();
      p.once("exit", () => resolve());
      p.kill("SIGTERM");
    });

  beforeAll(async () => {
    tmp = await makeTempDir("ef-outage-");
    port = await freePort();
    url = `mqtt://127.0.0.1:${port}`;
    // Started as root, Mosquitto drops to its own user: its persistence directory must be reachable
    // and writable by that user (a directory of its own: the agent makes its socket's directory 0700).
    brokerTmp = await makeTempDir("ef-outage-mq-");
    await chmod(brokerTmp.path, 0o711);
    const store = join(brokerTmp.path, "data");
    await mkdir(store);
    await chmod(store, 0o777);
    conf = join(brokerTmp.path, "mosquitto.conf");
    // Persistence on, so retained messages outlive the restart: what the server must re-read.
    await writeFile(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        "persistence true",
        `persistence_location ${store}/`,
        "max_inflight_messages 0",
        "",
      ].join("\n"),
    );
    mosquitto = await spawnMosquitto(conf, port);
    h = await startHarness(tmp.path, { mqttUrl: url });
    await h.startAgent("out-a", "generic-x64");
    // A second device as a bare MQTT client that never reconnects: after the restart only its
    // retained presence, re-read by the server's re-subscription, can tell the server about it.
    const { password } = await h.api.enrollDevice({ id: "out-b", profile: "generic-x64" });
    const presence = topics.device("out-b", "presence");
    bare = await mqtt.connectAsync(url, {
      clientId: "out-b",
      username: "out-b",
      password,
      reconnectPeriod: 0,
      will: { topic: presence, payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    await bare.publishAsync(presence, "online", { qos: 1, retain: true });
  });

  afterAll(async () => {
    bare?.end(true);
    await h?.close();
    await stopMosquitto();
    await tmp?.cleanup();
    await brokerTmp?.cleanup();
  });

  it("says degraded, not ready and presence unknown while down; all comes back after the restart", async () => {
    const presenceOf = async (id: string) => (await h.api.getDevice(id)) as Record<string, unknown>;
    await waitFor("both devices online", async () => {
      const { devices } = await h.api.listDevices();
      return devices.filter((d) => d.presence === "online").length === 2;
    });
    expect(await probe(h.server, "/healthz")).toMatchObject({
      status: 200,
      body: { status: "ok", checks: { broker: { status: "up", kind: "external" } } },
    });
    expect((await probe(h.server, "/readyz")).status).toBe(200);
    expect(await brokerMetrics(h.server)).toEqual({ connected: 1, disconnects: 0 });
    // The broker loses the retained trust root (an operator, or a restart without persistence):
    // the server must retain it again once it is back, as it does at start.
    const clearer = await mqtt.connectAsync(url, { clientId: "clearer", reconnectPeriod: 0 });
    await clearer.publishAsync(topics.trustRoot(), "", { qos: 1, retain: true });
    await clearer.endAsync();

    const beforeStop = new Date().toISOString();
    await stopMosquitto();
    bare?.end(true);

    const live = await waitFor(
      "healthz degraded",
      async () => {
        const p = await probe(h.server, "/healthz");
        return p.body.status === "degraded" ? p : null;
      },
      15_000,
    );
    expect(live.status).toBe(200); // liveness: an orchestrator must not restart a server waiting for its broker
    expect(live.body.checks.broker.status).toBe("down");
    expect(live.body.checks.broker.reason).toContain("no connection to the MQTT broker since");
    const ready = await probe(h.server, "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body.status).toBe("not ready");
    expect(await brokerMetrics(h.server)).toEqual({ connected: 0, disconnects: 1 });
    for (const id of ["out-a", "out-b"]) {
      const d = await presenceOf(id);
      expect(d.presence, id).toBe("unknown");
      // Mosquitto publishes its clients' wills as it shuts down, so the last message may be `offline`.
      expect(["online", "offline"], id).toContain(d.lastKnownPresence);
      expect(d.presenceSince, id).toBe(live.body.checks.broker.since);
      expect(String(d.presenceSince) >= beforeStop).toBe(true);
    }
    const listed = await run(process.execPath, [FLEETCTL, "--server", h.server.httpUrl, "devices", "list"], {
      env: { ...process.env, EDGEFLEET_TOKEN: h.server.adminToken },
    });
    const line = listed.stdout.split("\n").find((l) => l.startsWith("out-a"));
    expect(line).toContain(`unknown since ${live.body.checks.broker.since} (last known `);

    mosquitto = await spawnMosquitto(conf, port);
    await waitFor(
      "readyz 200 after the restart",
      async () => (await probe(h.server, "/readyz")).status === 200,
      30_000,
    );
    expect((await probe(h.server, "/healthz")).body).toMatchObject({
      status: "ok",
      checks: { broker: { status: "up" } },
    });
    expect(await brokerMetrics(h.server)).toEqual({ connected: 1, disconnects: 1 });
    // out-a's agent reconnects and announces itself; out-b never comes back, so its presence can
    // only come from the retained message the broker kept (whatever the broker holds is the truth).
    await waitFor("out-a online again", async () => (await presenceOf("out-a")).presence === "online");
    const keptForB = await retained(url, topics.device("out-b", "presence"));
    expect(["online", "offline"]).toContain(keptForB);
    await waitFor("out-b re-read", async () => (await presenceOf("out-b")).presence === keptForB);
    expect((await presenceOf("out-b")).presenceSince).toBeNull();
    const root = await waitFor("trust root retained again", () => retained(url, topics.trustRoot()));
    expect(Array.isArray(JSON.parse(root))).toBe(true);
  });
});

describe("the fleet server on its embedded broker", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  beforeAll(async () => {
    tmp = await makeTempDir("ef-embedded-health-");
    server = await startFleetServer({
      dataDir: join(tmp.path, "server"),
      httpPort: 0,
      mqttPort: 0,
      log: pino({ level: "silent" }),
    });
  });
  afterAll(async () => {
    await server?.close();
    await tmp?.cleanup();
  });

  it("is ok and ready, the broker check says embedded and up, and the metric is 1", async () => {
    expect(await probe(server, "/healthz")).toMatchObject({
      status: 200,
      body: { status: "ok", checks: { broker: { status: "up", kind: "embedded" } } },
    });
    expect(await probe(server, "/readyz")).toMatchObject({ status: 200, body: { status: "ready" } });
    expect(await brokerMetrics(server)).toEqual({ connected: 1, disconnects: 0 });
  });
});
