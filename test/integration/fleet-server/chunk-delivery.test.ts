import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aedes, type Client } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openAgentStore } from "../../../agent/store/agent-store.js";
import { mqttChunkChannel } from "../../../agent/transport/chunk-channel.js";
import { createMqttLink, type MqttLink } from "../../../agent/transport/mqtt-link.js";
import { startDownload } from "../../../agent/updater/downloader.js";
import { connectTransport, type Transport } from "../../../fleet-server/broker/transport.js";
import { createBlobStore } from "../../../fleet-server/bundles/bundle-store.js";
import { createChunkServer } from "../../../fleet-server/bundles/chunk-server.js";
import type { DeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { decodeChunkFrame } from "../../../shared/chunk-frame.js";
import { systemClock } from "../../../shared/clock.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import { MAX_CHUNK } from "../../../shared/schemas/chunks.js";
import { createTopics } from "../../../shared/topics.js";

/**
 * The agent's downloader against the fleet server's real chunk server (issue 17), through aedes:
 * frames are counted on the server side, as it publishes them, so a re-sent chunk cannot hide.
 */
const CHUNK = 64 * 1024;
const DEVICE = "dev-1";
const topics = createTopics();
const log = createLogger({ name: "test", level: "silent", pretty: false });

let broker: Aedes;
let server: Server;
let url: string;
let dir: string;
let bundle: Buffer;
let sha: string;
let transport: Transport;
/** Offsets of the data frames the chunk server published, in order. */
let servedOffsets: number[];
/** Bytes the chunk server reported as delivered (issue 22, `onServed`), per device and bundle. */
let delivered: Map<string, number>;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  broker = await Aedes.createBroker();
  server = createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), "ef-chunks-"));
  bundle = randomBytes(CHUNK * 20 + 999);
  sha = sha256Hex(bundle);
  servedOffsets = [];
  delivered = new Map();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await new Promise<void>((r) => broker.close(() => r()));
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

/** The real chunk server on its own MQTT connection, serving `bytes` stored under `sha`. */
async function startChunkServer(opts: { bytes?: Buffer; bandwidthBytesPerSec?: number } = {}) {
  const blobs = await createBlobStore(join(dir, "server"));
  await writeFile(blobs.bundlePath(sha), opts.bytes ?? bundle);
  // Only `get` is used: the device's desired state names the bundle.
  const devices = {
    get: (id: string) =>
      id === DEVICE ? { desired: { signed: { assignments: [{ bundle: { sha256: sha } }] } } } : null,
  } as unknown as DeviceRepo;
  transport = await connectTransport({ url, clientId: "fleet-server", log });
  const counting: Transport = {
    ...transport,
    publish(topic, payload, o) {
      const frame = decodeChunkFrame(payload as Buffer);
      if (!frame.header.error) servedOffsets.push(frame.header.offset);
      return transport.publish(topic, payload, o);
    },
  };
  const chunks = createChunkServer({
    log,
    clock: systemClock,
    topics,
    transport: counting,
    blobs,
    devices,
    onServed: (deviceId, sha256, bytes) =>
      delivered.set(`${deviceId} ${sha256}`, (delivered.get(`${deviceId} ${sha256}`) ?? 0) + bytes),
    ...(opts.bandwidthBytesPerSec !== undefined ? { bandwidthBytesPerSec: opts.bandwidthBytesPerSec } : {}),
  });
  await transport.subscribe(topics.allDevices("chunks/req"), (topic, payload) => {
    const t = topics.parse(topic);
    if (t) chunks.handle(t.deviceId, payload);
  });
  cleanups.push(async () => {
    await chunks.close();
    await transport.close();
  });
  return chunks;
}

async function connectLink(): Promise<MqttLink> {
  const link = createMqttLink({
    url,
    deviceId: DEVICE,
    password: "x",
    topics,
    subscriptions: [topics.device(DEVICE, "chunks/res")],
    log,
    clock: systemClock,
    backoff: { baseMs: 20, capMs: 100 },
  });
  cleanups.push(() => link.close());
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

function download(link: MqttLink, window?: { min: number; max: number; initial: number }) {
  const store = openAgentStore(join(dir, "agent.db"));
  cleanups.push(async () => store.close());
  return startDownload({
    sha256: sha,
    size: bundle.length,
    dir: join(dir, "downloads"),
    store,
    channel: mqttChunkChannel(link, topics, DEVICE),
    clock: systemClock,
    log,
    chunkSize: CHUNK,
    timeoutMs: 10_000,
    ...(window ? { windowBounds: window } : {}),
  });
}

/** Chunks the server published more than once. */
function reSent(): number {
  const seen = new Set<number>();
  let again = 0;
  for (const o of servedOffsets) {
    if (seen.has(o)) again += 1;
    seen.add(o);
  }
  return again;
}

describe("chunk delivery through the real chunk server", () => {
  it("delivers the bundle with the adaptive window, every chunk served exactly once", async () => {
    await startChunkServer();
    const link = await connectLink();
    const path = await download(link).done;
    expect(sha256Hex(await readFile(path))).toBe(sha);
    expect(servedOffsets.length).toBe(Math.ceil(bundle.length / CHUNK));
    expect(reSent()).toBe(0);
    // Every byte sent counts once as delivered (cost per prediction, issue 22).
    expect(delivered).toEqual(new Map([[`${DEVICE} ${sha}`, bundle.length]]));
  });

  it("survives a dropped link mid-window and re-sends at most one window", async () => {
    // Paced (1 MiB/s, ~64 ms a chunk) so that the link drops with a full window in flight.
    await startChunkServer({ bandwidthBytesPerSec: 1024 * 1024 });
    let agentClient: Client | null = null;
    broker.on("client", (c) => {
      if (c.id === DEVICE) agentClient = c;
    });
    const link = await connectLink();
    const states: string[] = [];
    link.onState((s) => states.push(s));
    const bounds = { min: 2, max: 4, initial: 4 };
    const dl = download(link, bounds);
    while (servedOffsets.length < 6) await new Promise((r) => setTimeout(r, 5));
    agentClient!.close(); // the network drops the device; the link reconnects with backoff
    const path = await dl.done;
    expect(sha256Hex(await readFile(path))).toBe(sha);
    expect(states).toContain("disconnected");
    // The requests in flight at the drop were answered into the void and asked again: some, at
    // most one window of them; everything else exactly once.
    expect(reSent()).toBeGreaterThanOrEqual(1);
    expect(reSent()).toBeLessThanOrEqual(bounds.max);
    expect(new Set(servedOffsets).size).toBe(Math.ceil(bundle.length / CHUNK));
  });

  it("fails fast with the server's reason when the server's copy is damaged", async () => {
    const damaged = Buffer.from(bundle);
    damaged.writeUInt8(damaged.readUInt8(12345) ^ 0xff, 12345);
    await startChunkServer({ bytes: damaged });
    const link = await connectLink();
    const err = await download(link).done.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "DOWNLOAD_FAILED", details: { code: "BUNDLE_HASH_MISMATCH" } });
    expect(servedOffsets).toEqual([]); // not a byte of it was sent
  });
});

describe("chunk server answers bad requests with a reason", () => {
  let device: MqttClient;
  const frames: Buffer[] = [];

  async function ask(payload: string | Buffer) {
    const before = frames.length;
    await device.publishAsync(topics.device(DEVICE, "chunks/req"), payload, { qos: 0 });
    return before;
  }
  async function next(index: number) {
    while (frames.length <= index) await new Promise((r) => setTimeout(r, 5));
    return decodeChunkFrame(frames[index]!);
  }

  beforeEach(async () => {
    frames.length = 0;
    await startChunkServer();
    device = await mqtt.connectAsync(url, { clientId: DEVICE, protocolVersion: 4 });
    cleanups.push(() => device.endAsync());
    device.on("message", (_t, p) => frames.push(p));
    await device.subscribeAsync(topics.device(DEVICE, "chunks/res"), { qos: 0 });
  });

  it("oversize length: BAD_REQUEST naming the field", async () => {
    const i = await ask(JSON.stringify({ bundle: sha, offset: 0, length: MAX_CHUNK + 1, reqId: "big" }));
    const f = await next(i);
    expect(f.header).toMatchObject({ reqId: "big", length: 0, error: { code: "BAD_REQUEST" } });
    expect(f.header.error?.message).toMatch(/length/);
  });

  it("offset past the end: RANGE_NOT_SATISFIABLE with the bundle's size", async () => {
    const i = await ask(JSON.stringify({ bundle: sha, offset: bundle.length, length: 10, reqId: "past" }));
    const f = await next(i);
    expect(f.header).toMatchObject({ reqId: "past", size: bundle.length, error: { code: "RANGE_NOT_SATISFIABLE" } });
  });

  it("a request without a reqId or not JSON is dropped; the next good one is answered", async () => {
    const i = await ask("{not json");
    await ask(JSON.stringify({ bundle: sha, offset: 0, length: 10 }));
    await ask(JSON.stringify({ bundle: sha, offset: 5, length: 10, reqId: "good" }));
    const f = await next(i);
    expect(f.header).toMatchObject({ reqId: "good", offset: 5, length: 10 });
    expect(f.bytes.equals(bundle.subarray(5, 15))).toBe(true);
  });
});
