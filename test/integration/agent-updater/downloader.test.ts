import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aedes, type Client } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openAgentStore } from "../../../agent/store/agent-store.js";
import { mqttChunkChannel } from "../../../agent/transport/chunk-channel.js";
import { createMqttLink, type MqttLink } from "../../../agent/transport/mqtt-link.js";
import { startDownload } from "../../../agent/updater/downloader.js";
import { encodeChunkFrame } from "../../../shared/chunk-frame.js";
import { systemClock } from "../../../shared/clock.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import { ChunkRequestSchema } from "../../../shared/schemas/chunks.js";
import { createTopics } from "../../../shared/topics.js";

const CHUNK = 64 * 1024;
const WINDOW = 4;
const DEVICE = "dev-1";
const topics = createTopics();
const log = createLogger({ name: "test", level: "warn", pretty: false });

interface Responder {
  requests: { offset: number; length: number }[];
  served: number;
  /** When set, requests are counted but not answered once `served` reaches it. */
  stopAfter: number | null;
  client: MqttClient;
}

let broker: Aedes;
let server: Server;
let url: string;
let dir: string;
let bundle: Buffer;
let sha: string;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  broker = await Aedes.createBroker();
  server = createServer(broker.handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), "ef-dl-"));
  bundle = randomBytes(CHUNK * 20 + 1234);
  sha = sha256Hex(bundle);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await new Promise<void>((r) => broker.close(() => r()));
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

/** The test's stand-in for the fleet server: answers chunk requests from `bundle`. */
async function startResponder(): Promise<Responder> {
  const client = await mqtt.connectAsync(url, { clientId: "responder", protocolVersion: 4 });
  const r: Responder = { requests: [], served: 0, stopAfter: null, client };
  await client.subscribeAsync(topics.device(DEVICE, "chunks/req"), { qos: 1 });
  client.on("message", (_topic, payload) => {
    const req = ChunkRequestSchema.parse(JSON.parse(payload.toString("utf8")));
    r.requests.push({ offset: req.offset, length: req.length });
    if (r.stopAfter !== null && r.served >= r.stopAfter) return;
    r.served += 1;
    const bytes = bundle.subarray(req.offset, req.offset + req.length);
    const frame = encodeChunkFrame(
      { reqId: req.reqId, bundle: req.bundle, offset: req.offset, length: bytes.length, size: bundle.length },
      bytes,
    );
    client.publish(topics.device(DEVICE, "chunks/res"), frame, { qos: 1 });
  });
  cleanups.push(() => client.endAsync());
  return r;
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

function download(link: MqttLink, store: ReturnType<typeof openAgentStore>, timeoutMs = 5000) {
  return startDownload({
    sha256: sha,
    size: bundle.length,
    dir: join(dir, "downloads"),
    store,
    channel: mqttChunkChannel(link, topics, DEVICE),
    clock: systemClock,
    log,
    chunkSize: CHUNK,
    window: WINDOW,
    timeoutMs,
  });
}

describe("chunk downloader over aedes", () => {
  it("downloads a bundle and verifies its SHA-256", async () => {
    const responder = await startResponder();
    const store = openAgentStore(join(dir, "agent.db"));
    cleanups.push(async () => store.close());
    const link = await connectLink();
    const path = await download(link, store).done;
    expect(sha256Hex(await readFile(path))).toBe(sha);
    expect(responder.requests.reduce((a, r) => a + r.length, 0)).toBe(bundle.length);
    expect(store.downloadProgress(sha)).toBeNull();
  });

  it("resumes after the downloader is stopped, re-requesting at most one window", async () => {
    const responder = await startResponder();
    responder.stopAfter = 7;
    const dbPath = join(dir, "agent.db");
    const store1 = openAgentStore(dbPath);
    const link1 = await connectLink();
    const first = download(link1, store1, 60_000);
    while (responder.served < 7 || (store1.downloadProgress(sha) ?? 0) < CHUNK * 3) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await first.close();
    await expect(first.done).rejects.toMatchObject({ code: "DOWNLOAD_FAILED" });
    await link1.close();
    store1.close();
    const servedBefore = new Set(responder.requests.slice(0, 7).map((r) => r.offset));
    const countBefore = responder.requests.length;

    responder.stopAfter = null;
    const store2 = openAgentStore(dbPath);
    cleanups.push(async () => store2.close());
    const resumedFrom = store2.downloadProgress(sha)!;
    expect(resumedFrom).toBeGreaterThan(0);
    const link2 = await connectLink();
    const path = await download(link2, store2).done;
    expect(sha256Hex(await readFile(path))).toBe(sha);
    const again = responder.requests.slice(countBefore).filter((r) => servedBefore.has(r.offset));
    expect(again.reduce((a, r) => a + r.length, 0)).toBeLessThanOrEqual(WINDOW * CHUNK);
    expect(responder.requests.slice(countBefore).every((r) => r.offset >= resumedFrom)).toBe(true);
  });

  it("survives a dropped connection mid-download", async () => {
    const responder = await startResponder();
    const store = openAgentStore(join(dir, "agent.db"));
    cleanups.push(async () => store.close());
    let agentClient: Client | null = null;
    broker.on("client", (c) => {
      if (c.id === DEVICE) agentClient = c;
    });
    responder.stopAfter = 5;
    const link = await connectLink();
    const states: string[] = [];
    link.onState((s) => states.push(s));
    const dl = download(link, store, 60_000);
    while (responder.requests.length < 6) await new Promise((r) => setTimeout(r, 10));
    // The broker drops the device (network failure); the link reconnects with backoff.
    agentClient!.close();
    responder.stopAfter = null;
    const path = await dl.done;
    expect(sha256Hex(await readFile(path))).toBe(sha);
    expect(states).toContain("disconnected");
    expect(states.at(-1)).toBe("connected");
    expect((await stat(path)).size).toBe(bundle.length);
  });
});
