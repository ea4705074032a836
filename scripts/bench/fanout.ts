import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { createTopics } from "../../shared/topics.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import { type BenchFleet, killChild, startBenchFleet, waitUntil } from "./fleet-fixture.js";
import { ratio } from "./stats.js";

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** An anonymous local Mosquitto; `extra` config lines are appended (bundle-delivery adds set_tcp_nodelay). */
export async function startMosquitto(dir: string, extra: string[] = []): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      "max_inflight_messages 0",
      ...extra,
      "",
    ].join("\n"),
  );
  const proc = spawn("/usr/sbin/mosquitto", ["-c", conf], { stdio: "ignore" });
  await waitUntil("mosquitto port", async () => {
    const sock = connect(port, "127.0.0.1");
    return new Promise<boolean>((resolve) => {
      sock.once("connect", () => resolve(true)).once("error", () => resolve(false));
    }).finally(() => sock.destroy());
  });
  return { url: `mqtt://127.0.0.1:${port}`, proc };
}

interface FanoutResult {
  broker: string;
  devices: number;
  received: number;
  /** createRollout call → first / median / last device receiving its new desired state. */
  firstMs: number;
  p50Ms: number;
  allMs: number;
}

/** N enrolled devices as mqtt.js clients in this process; one all-at-once rollout; time until all N see it. */
async function fanoutOnce(root: string, broker: string, n: number, mqttUrl?: string): Promise<FanoutResult> {
  const dir = await mkdtemp(join(root, `${broker}-`));
  let fleet: BenchFleet | undefined;
  const clients: MqttClient[] = [];
  try {
    fleet = await startBenchFleet(dir, mqttUrl !== undefined ? { mqttUrl } : {});
    const topics = createTopics(fleet.server.topicPrefix);
    const up = await fleet.api.upload(sileroModelPath());
    await fleet.api.createModel({ name: "silero-vad", version: "5.0.0", upload: up.sha256, samples: sileroSamples() });
    const version = (await fleet.api.getModelVersion("silero-vad", "5.0.0")) as {
      variants: { variant: string; bundle: { sha256: string } }[];
    };
    const sha = version.variants.find((v) => v.variant === "fp32")!.bundle.sha256;

    const ids = Array.from({ length: n }, (_, i) => `fan-${i}`);
    const got = new Map<string, bigint>();
    let t0 = 0n;
    for (const id of ids) {
      const { password } = await fleet.api.enrollDevice({ id, profile: "generic-x64" });
      const client = await mqtt.connectAsync(fleet.server.mqttUrl, {
        clientId: id,
        username: id,
        password,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      clients.push(client);
      client.on("message", (_topic, payload) => {
        if (t0 !== 0n && !got.has(id) && payload.includes(sha)) got.set(id, process.hrtime.bigint());
      });
      await client.subscribeAsync(topics.device(id, "desired"), { qos: 1 });
    }
    await new Promise((r) => setTimeout(r, 1000)); // retained pre-rollout states delivered and ignored
    t0 = process.hrtime.bigint();
    await fleet.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      strategy: "all-at-once",
      target: { deviceIds: ids },
    });
    await waitUntil(`all ${n} desired states`, async () => got.size === n, 60_000).catch(() => undefined);
    const times = [...got.values()].map((t) => Number(t - t0) / 1e6).sort((a, b) => a - b);
    const r = (x: number | undefined) => Math.round((x ?? Number.NaN) * 10) / 10;
    return {
      broker,
      devices: n,
      received: got.size,
      firstMs: r(times[0]),
      p50Ms: r(times[Math.floor(times.length / 2)]),
      allMs: got.size === n ? r(times.at(-1)) : Number.NaN,
    };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await fleet?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Scenario "rollout notification fan-out" (architecture.md §9): from `POST /v1/rollouts` to N simulated
 * devices holding their new desired state, with the embedded aedes broker (figure) and with an
 * external Mosquitto (anchor) in the same run.
 */
export async function benchFanout(n = 200): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), "ef-bench-fan-"));
  let mosq: ChildProcess | undefined;
  try {
    const aedes = await fanoutOnce(root, "aedes", n);
    const m = await startMosquitto(root);
    mosq = m.proc;
    const mosquitto = await fanoutOnce(root, "mosquitto", n, m.url);
    return {
      scenario: "fanout",
      devices: n,
      anchor: { what: "external Mosquitto (anonymous)", ...mosquitto },
      figure: { what: "embedded aedes (per-device credentials)", ...aedes },
      ratioAll: ratio(aedes.allMs, mosquitto.allMs),
    };
  } finally {
    if (mosq) await killChild(mosq);
    await rm(root, { recursive: true, force: true });
  }
}
