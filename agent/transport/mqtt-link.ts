import mqtt, { type MqttClient } from "mqtt";
import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import { type BackoffOptions, fullJitterDelay } from "./backoff.js";
import { DEFAULT_MQTT_TIMING } from "./mqtt-config.js";
import type { TlsClientOptions } from "./tls.js";

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

export interface MqttLinkOptions {
  url: string;
  deviceId: string;
  password: string;
  topics: Topics;
  /** Topics subscribed (QoS 1) on every connect; the session is clean, so we always resubscribe. */
  subscriptions: readonly string[];
  log: Logger;
  clock: Clock;
  random?: () => number;
  /** Reconnect backoff bounds (agent config `mqtt.reconnect`; defaults in mqtt-config.ts, as for the rest). */
  backoff?: BackoffOptions;
  /** One connection attempt's limit (agent config `mqtt.connectTimeoutMs`). */
  connectTimeoutMs?: number;
  /**
   * MQTT keepalive in seconds (agent config `mqtt.keepaliveSec`). A half-open connection (no FIN,
   * no RST: a NAT that forgot the flow) is noticed only by a missing PINGRESP, about 1.5
   * keepalives after the last traffic.
   */
  keepaliveSec?: number;
  /** Publishes kept while disconnected (agent config `mqtt.maxQueuedOffline`); later ones are dropped until the next connect. */
  maxQueuedOffline?: number;
  /** Pinned CA (and optional client certificate) for mqtts:// / wss:// (agent/transport/tls.ts). */
  tls?: TlsClientOptions;
}

export interface MqttLink {
  state(): ConnectionState;
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain?: boolean }): void;
  onMessage(cb: (topic: string, payload: Buffer) => void): () => void;
  onState(cb: (state: ConnectionState) => void): () => void;
  /**
   * Opens the connection. Separate from creation so the owner attaches its message handlers first:
   * retained messages (the desired state) arrive right after SUBSCRIBE and would otherwise be lost
   * until the next reconnect. Idempotent.
   */
  start(): void;
  /** Publishes `offline` presence (when connected) and disconnects for good. */
  close(): Promise<void>;
}

/**
 * The agent's MQTT connection (architecture.md §4). mqtt.js's fixed `reconnectPeriod` is disabled; we
 * reconnect ourselves with full-jitter exponential backoff on the same client, so QoS 1 publishes
 * in flight when the connection broke, and those made while disconnected (up to `maxQueuedOffline`),
 * go out after the reconnect (at least once).
 * Invariant: at most one reconnect timer is pending; none after close().
 */
export function createMqttLink(opts: MqttLinkOptions): MqttLink {
  const { log, clock, topics, deviceId } = opts;
  const random = opts.random ?? Math.random;
  const presence = topics.device(deviceId, "presence");
  const messageListeners = new Set<(topic: string, payload: Buffer) => void>();
  const stateListeners = new Set<(state: ConnectionState) => void>();
  let state: ConnectionState = "connecting";
  let attempt = 0;
  let timer: { cancel(): void } | null = null;
  let closing = false;
  const maxQueued = opts.maxQueuedOffline ?? DEFAULT_MQTT_TIMING.maxQueuedOffline;
  let queuedOffline = 0;

  const setState = (next: ConnectionState) => {
    if (next === state) return;
    state = next;
    for (const cb of stateListeners) cb(next);
  };

  const client: MqttClient = mqtt.connect(opts.url, {
    clientId: deviceId,
    username: deviceId,
    password: opts.password,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    resubscribe: false,
    connectTimeout: opts.connectTimeoutMs ?? DEFAULT_MQTT_TIMING.connectTimeoutMs,
    keepalive: opts.keepaliveSec ?? DEFAULT_MQTT_TIMING.keepaliveSec,
    will: { topic: presence, payload: Buffer.from("offline"), qos: 1, retain: true },
    ...(opts.tls ?? {}),
    manualConnect: true,
    // mqtt-packet otherwise pre-builds 65,536 two-byte Buffers for packet ids on the first write:
    // about 6 MiB of heap an idle device keeps for ever, to save one tiny allocation per QoS 1
    // packet (issue 16, heap snapshot in docs/benchmarks.md "Agent idle").
    writeCache: false,
  });
  let started = false;

  client.on("connect", () => {
    attempt = 0;
    // Small packets (chunk requests, PUBACKs) must not wait for Nagle: behind a delayed ACK each one
    // cost up to 40 ms, most of a chunk's round trip (docs/benchmarks.md, "Bundle delivery").
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    // mqtt.js emits `connect` once everything it kept has been sent and acknowledged.
    queuedOffline = 0;
    log.info({ url: opts.url }, "mqtt connected");
    client.subscribe(
      opts.subscriptions.map((t) => t),
      { qos: 1 },
      (err) => {
        if (err) log.warn({ err }, "mqtt subscribe failed");
      },
    );
    client.publish(presence, "online", { qos: 1, retain: true });
    setState("connected");
  });
  client.on("message", (topic, payload) => {
    for (const cb of messageListeners) {
      try {
        cb(topic, payload);
      } catch (err) {
        log.error({ err, topic }, "mqtt message handler threw");
      }
    }
  });
  client.on("error", (err) => log.warn({ err: err.message }, "mqtt error"));
  client.on("close", () => {
    if (closing) return;
    setState("disconnected");
    if (timer) return;
    const delay = fullJitterDelay(attempt, random, opts.backoff ?? DEFAULT_MQTT_TIMING.reconnect);
    attempt += 1;
    log.debug({ delay, attempt }, "mqtt reconnect scheduled");
    timer = clock.setTimeout(() => {
      timer = null;
      if (closing) return;
      setState("connecting");
      // mqtt.js's reconnect() without arguments swaps in new, empty message stores: a QoS 1 publish
      // sent and not yet acknowledged when the connection broke would be lost silently (issue 23,
      // found by test/integration/agent-transport/mqtt-link.test.ts). Keep ours.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delay);
  });

  return {
    state: () => state,
    publish(topic, payload, o) {
      // Queued while disconnected, up to a bound (issue 23): an outage of days must not grow
      // mqtt.js's in-memory store without limit, and mqtt.js re-sends what it kept one PUBACK at a
      // time before `connect` (so before we subscribe again): a long queue delays `desired`. Past
      // it, publishes are dropped: `reported` is re-published on every connect (agent/main.ts),
      // telemetry (events included) waits in the telemetry buffer until acked, chunk requests are
      // retried on timeout; only the server's live event log misses what was dropped.
      if (!client.connected) {
        if (queuedOffline >= maxQueued) {
          if (queuedOffline === maxQueued) log.warn({ max: maxQueued }, "mqtt offline queue full; dropping publishes");
          queuedOffline = maxQueued + 1;
          return;
        }
        queuedOffline += 1;
      }
      client.publish(topic, payload, { qos: o.qos, retain: o.retain ?? false }, (err) => {
        if (err && !closing) log.debug({ err: err.message, topic }, "mqtt publish not delivered yet");
      });
    },
    start() {
      if (started || closing) return;
      started = true;
      client.connect();
    },
    onMessage(cb) {
      messageListeners.add(cb);
      return () => messageListeners.delete(cb);
    },
    onState(cb) {
      stateListeners.add(cb);
      return () => stateListeners.delete(cb);
    },
    async close() {
      if (closing) return;
      closing = true;
      timer?.cancel();
      timer = null;
      // Bounded: a PUBACK that never comes (link dropping right now) must not hang shutdown;
      // the broker publishes the LWT `offline` in that case anyway.
      const bounded = <T>(p: Promise<T>) =>
        Promise.race([p.catch(() => undefined), new Promise<void>((r) => clock.setTimeout(r, 2000))]);
      if (client.connected) {
        await bounded(client.publishAsync(presence, "offline", { qos: 1, retain: true }));
        await bounded(client.endAsync());
      }
      await bounded(client.endAsync(true));
      setState("closed");
    },
  };
}
