import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { encodeChunkFrame } from "../../shared/chunk-frame.js";
import { ChunkRequestSchema } from "../../shared/schemas/chunks.js";
import type { DesiredState, HealthPolicy } from "../../shared/schemas/desired-state.js";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import { createTopics } from "../../shared/topics.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair } from "../../shared/trust/keys.js";
import { type AgentProcess, spawnAgent } from "../helpers/agent-process.js";
import type { ServedBundle } from "./bundles.js";

/**
 * The adversary plays the fleet server itself: a real aedes broker on port 0 (anonymous), its own
 * root/release/director keys and a self-signed root.json the agent pins, an MQTT client that
 * serves chunk requests from an in-memory map (sha256 → bytes, so it can serve bytes that do not
 * match their id), and signed desired states built on demand. It records every event and the
 * latest `reported` document of each device.
 */

/** An event as published on `fleet/v1/d/{id}/events`; kept loose so new event fields never break the suite. */
export interface SeenEvent {
  type: string;
  deviceId?: string;
  seq?: number | null;
  model?: string | null;
  bundle?: string | null;
  from?: string;
  to?: string;
  error?: { code: string; message: string; details?: unknown };
}

export interface SeenReported {
  lastDesiredSeq: number;
  models: { model: string; state: string; committed: { version: string; sha256: string } | null }[];
}

export interface DesiredOptions {
  /** Defaults to `nextSeq()`. */
  seq?: number;
  /** Defaults to the adversary's device. */
  deviceId?: string;
  issuedAt?: Date;
  /** Defaults to one hour after `issuedAt`. */
  expires?: Date;
  /** Defaults to the director key. */
  signers?: KeyPair[];
}

export const HEALTH_POLICY: HealthPolicy = {
  probationSeconds: 1,
  probationRequests: 0,
  maxErrorRatePercent: 5,
  maxP95LatencyRatio: 3,
  maxHostRestarts: 2,
};

export interface Adversary {
  readonly dir: string;
  readonly deviceId: string;
  readonly mqttUrl: string;
  readonly rootJsonPath: string;
  readonly keys: { root: KeyPair; release: KeyPair; director: KeyPair };
  readonly events: readonly SeenEvent[];
  /** Serves `bundle.bytes` under `bundle.sha256`. */
  serve(bundle: Pick<ServedBundle, "sha256" | "bytes">): void;
  /** Chunk requests the device made for `sha256` so far. */
  chunkRequests(sha256: string): number;
  /** A fresh, strictly increasing desired-state seq. */
  nextSeq(): number;
  /** A desired state assigning `bundles`, signed (by default) with the director key. */
  desired(bundles: readonly ServedBundle[], opts?: DesiredOptions): Envelope<DesiredState>;
  /** Publishes any document (a Buffer: those raw bytes) on the device's desired topic, retained, QoS 1. */
  publishDesired(doc: unknown): Promise<void>;
  /** Publishes any payload on the retained trust-root topic (a root chain, oldest first). */
  publishRootChain(chain: unknown): Promise<void>;
  /** The self-signed root v1 the device pins. */
  readonly signedRoot: Envelope<Root>;
  waitForEvent(what: string, pred: (e: SeenEvent) => boolean, timeoutMs?: number): Promise<SeenEvent>;
  waitForReported(what: string, pred: (r: SeenReported) => boolean, timeoutMs?: number): Promise<SeenReported>;
  /** Resolves with the rejection event for `seq`, or `accepted` once the device reports that seq (a bug). */
  desiredOutcome(seq: number, timeoutMs?: number): Promise<SeenEvent | "accepted">;
  /** Spawns a real `edge-agent` for the adversary's device, pinned to the adversary's root.json. */
  /** Starts (or restarts, same data dir) the device's agent; `env` adds environment variables (fault injection). */
  startAgent(profile: string, opts?: { env?: Record<string, string> }): Promise<AgentProcess>;
  close(): Promise<void>;
}

const HOUR = 3600_000;

export async function startAdversary(dir: string, deviceId: string): Promise<Adversary> {
  const topics = createTopics();
  const broker = await Aedes.createBroker();
  const server: Server = createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr !== "object") throw new Error("broker did not bind");
  const mqttUrl = `mqtt://127.0.0.1:${addr.port}`;

  const keys = { root: generateKeyPair(), release: generateKeyPair(), director: generateKeyPair() };
  const root: Root = {
    _type: "root",
    version: 1,
    expires: new Date(Date.now() + 24 * HOUR).toISOString(),
    keys: Object.fromEntries(Object.values(keys).map((k) => [k.keyid, k.publicKey])),
    roles: {
      root: { keyids: [keys.root.keyid], threshold: 1 },
      release: { keyids: [keys.release.keyid], threshold: 1 },
      director: { keyids: [keys.director.keyid], threshold: 1 },
    },
  };
  const rootJsonPath = join(dir, "root.json");
  const signedRoot = signEnvelope(root, [keys.root]);
  await writeFile(rootJsonPath, `${JSON.stringify(signedRoot, null, 2)}\n`);

  const client: MqttClient = await mqtt.connectAsync(mqttUrl, {
    clientId: `adversary-${process.pid}-${deviceId}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  const events: SeenEvent[] = [];
  const reported = new Map<string, SeenReported>();
  const served = new Map<string, Buffer>();
  const requests = new Map<string, number>();
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  let agent: AgentProcess | null = null;
  let seq = 0;

  const answerChunk = (id: string, payload: Buffer) => {
    const req = ChunkRequestSchema.parse(JSON.parse(payload.toString("utf8")));
    requests.set(req.bundle, (requests.get(req.bundle) ?? 0) + 1);
    const bytes = served.get(req.bundle);
    const header = { reqId: req.reqId, bundle: req.bundle, offset: req.offset };
    const frame = bytes
      ? encodeChunkFrame(
          { ...header, length: Math.min(req.length, bytes.length - req.offset), size: bytes.length },
          bytes.subarray(req.offset, req.offset + req.length),
        )
      : encodeChunkFrame(
          { ...header, length: 0, size: 0, error: { code: "NOT_FOUND", message: "no such bundle" } },
          new Uint8Array(0),
        );
    client.publish(topics.device(id, "chunks/res"), frame, { qos: 1 });
  };

  client.on("message", (topic, payload) => {
    const t = topics.parse(topic);
    if (!t) return;
    try {
      if (t.kind === "chunks/req") answerChunk(t.deviceId, payload);
      else if (t.kind === "events") events.push(JSON.parse(payload.toString("utf8")) as SeenEvent);
      else if (t.kind === "reported" && payload.length > 0) {
        reported.set(t.deviceId, JSON.parse(payload.toString("utf8")) as SeenReported);
      }
    } catch {
      // A malformed message from the device is not the adversary's concern; the assertions are.
    }
    notify();
  });
  await client.subscribeAsync(
    [topics.allDevices("events"), topics.allDevices("reported"), topics.allDevices("chunks/req")],
    { qos: 1 },
  );

  /** Waits until `check` returns a value, re-checking after each inbound message. */
  const until = <T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const attempt = () => {
        const v = check();
        if (v === undefined) return;
        cleanup();
        resolve(v);
      };
      const timer = setTimeout(() => {
        cleanup();
        const seen = events.map((e) => `${e.type}:${e.to ?? ""}:${e.error?.code ?? ""}`).join(", ");
        const logs = agent?.logs().slice(-3000) ?? "";
        reject(new Error(`timed out waiting for ${what}; events seen: [${seen}]\nagent log tail:\n${logs}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(attempt);
      };
      listeners.add(attempt);
      attempt();
    });

  const adv: Adversary = {
    dir,
    deviceId,
    mqttUrl,
    rootJsonPath,
    keys,
    events,
    serve: (b) => void served.set(b.sha256, b.bytes),
    chunkRequests: (sha256) => requests.get(sha256) ?? 0,
    nextSeq: () => ++seq,
    desired(bundles, opts = {}) {
      const issuedAt = opts.issuedAt ?? new Date();
      const doc: DesiredState = {
        _type: "desired",
        deviceId: opts.deviceId ?? deviceId,
        seq: opts.seq ?? adv.nextSeq(),
        issuedAt: issuedAt.toISOString(),
        expires: (opts.expires ?? new Date(issuedAt.getTime() + HOUR)).toISOString(),
        assignments: bundles.map((b) => ({
          model: b.manifest.signed.model.name,
          bundle: { sha256: b.sha256, size: b.size },
          releaseCounter: b.manifest.signed.releaseCounter,
          strategy: { mode: "active" as const },
          manifest: b.manifest,
        })),
        healthPolicy: HEALTH_POLICY,
        rollout: null,
      };
      return signEnvelope(doc, opts.signers ?? [keys.director]);
    },
    signedRoot,
    async publishRootChain(chain) {
      const payload = typeof chain === "string" || Buffer.isBuffer(chain) ? chain : JSON.stringify(chain);
      await client.publishAsync(topics.trustRoot(), payload, { qos: 1, retain: true });
    },
    async publishDesired(doc) {
      const payload = Buffer.isBuffer(doc) ? doc : JSON.stringify(doc);
      await client.publishAsync(topics.device(deviceId, "desired"), payload, { qos: 1, retain: true });
    },
    waitForEvent: (what, pred, timeoutMs = 60_000) => until(what, () => events.find(pred), timeoutMs),
    waitForReported: (what, pred, timeoutMs = 60_000) =>
      until(
        what,
        () => {
          const r = reported.get(deviceId);
          return r && pred(r) ? r : undefined;
        },
        timeoutMs,
      ),
    desiredOutcome: (s, timeoutMs = 30_000) =>
      until(
        `the device's verdict on desired seq ${s}`,
        (): SeenEvent | "accepted" | undefined => {
          const rejected = events.find((e) => e.type === "desired.rejected" && e.seq === s);
          if (rejected) return rejected;
          return (reported.get(deviceId)?.lastDesiredSeq ?? 0) >= s ? "accepted" : undefined;
        },
        timeoutMs,
      ),
    async startAgent(profile, opts = {}) {
      agent = await spawnAgent(
        {
          deviceId,
          mqttUrl,
          password: "anonymous-broker",
          dataDir: join(dir, deviceId),
          socketPath: join(dir, `${deviceId}.sock`),
          rootPath: rootJsonPath,
          profile,
        },
        opts,
      );
      return agent;
    },
    async close() {
      await agent?.kill("SIGTERM");
      await client.endAsync(true).catch(() => undefined);
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return adv;
}
