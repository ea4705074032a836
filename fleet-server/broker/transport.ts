import type { Duplex } from "node:stream";
import mqtt, { MqttClient } from "mqtt";
import type { Logger } from "../../shared/logger.js";

export type MessageHandler = (topic: string, payload: Buffer) => void;

/** The server's only view of MQTT, the same for the embedded and an external broker. */
export interface Transport {
  publish(topic: string, payload: string | Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
  /**
   * `shareGroup` (issue 14, replicas): subscribe as `$share/{group}/{filter}`, so the broker hands
   * each message to one subscriber of the group instead of to every replica. Messages still arrive
   * under their own topic, matched against `filter`.
   */
  subscribe(filter: string, handler: MessageHandler, opts?: { shareGroup?: string }): Promise<void>;
  /**
   * Connection changes after the first connect (issue 20 §4): `up` on each reconnect (mqtt.js then
   * subscribes again, so retained messages are re-read), `up: false` on each loss and failed retry.
   */
  onLink(listener: (event: { up: boolean; error?: string }) => void): void;
  /**
   * The retained messages under `filter` (topic → payload), read by a temporary subscription. MQTT
   * has no end-of-retained marker: the read ends once `quietMs` pass without one after the SUBACK
   * (or at `maxMs`), so a retained message slower than that is missed (callers must tolerate it).
   */
  readRetained(filter: string, opts: { quietMs: number; maxMs: number }): Promise<Map<string, Buffer>>;
  close(): Promise<void>;
}

/** MQTT topic filter match (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

export async function connectTransport(opts: {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  log: Logger;
  /** CA bundle to verify an `mqtts://` broker against (pinning; system CAs are not consulted). */
  ca?: Buffer;
  /**
   * A new in-process stream per (re)connect instead of dialing `url`: the embedded broker accepts the
   * server's identity only on such streams, so its credentials are useless from anywhere else.
   */
  stream?: () => Duplex;
}): Promise<Transport> {
  const { log } = opts;
  const options = {
    clientId: opts.clientId,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    protocolVersion: 4 as const,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    ...(opts.ca ? { ca: opts.ca, rejectUnauthorized: true } : {}),
  };
  const client: MqttClient = opts.stream ? new MqttClient(opts.stream, options) : mqtt.connect(opts.url, options);
  let up = false;
  let ending = false;
  let unexpected = 0;
  const handlers: { filter: string; handler: MessageHandler }[] = [];
  client.on("message", (topic, payload) => {
    for (const h of handlers) {
      if (!topicMatches(h.filter, topic)) continue;
      try {
        h.handler(topic, payload);
      } catch (err) {
        // A handler bug must not take the connection (and every other device) down with it.
        log.error({ err, topic }, "mqtt handler threw");
      }
    }
  });
  const linkListeners: ((event: { up: boolean; error?: string }) => void)[] = [];
  let lastError: string | undefined;
  client.on("error", (err) => {
    lastError = err.message;
    log.warn({ err: err.message }, "mqtt client error");
  });
  client.on("reconnect", () => log.info("mqtt reconnecting"));
  client.on("connect", () => {
    lastError = undefined;
    // No Nagle on a TCP broker link: chunk requests and PUBACKs are small (mqtt-link.ts says why).
    (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    up = true;
    for (const l of linkListeners) l({ up: true });
  });
  client.on("close", () => {
    // Every loss and failed retry reaches the link listeners (health, issue 20 §4)...
    for (const l of linkListeners) l(lastError === undefined ? { up: false } : { up: false, error: lastError });
    // ...and a live connection ending unasked is logged as an error (§5); the broker link counts it
    // (edgefleet_broker_disconnects_total).
    if (!up || ending) return;
    up = false;
    unexpected += 1;
    // MQTT 3.1.1 gives no reason: the broker just closes. A session takeover (issue 20 §5) looks
    // exactly like this, so it is an error.
    log.error(
      { clientId: opts.clientId, url: opts.url, count: unexpected },
      "mqtt connection closed without the server asking: broker restart, network, or another client took over this server's session (check for leaked server MQTT credentials)",
    );
  });

  await new Promise<void>((resolve, reject) => {
    const onConnect = () => {
      client.off("error", onError);
      resolve();
    };
    const onError = (err: Error) => {
      client.off("connect", onConnect);
      client.end(true);
      reject(err);
    };
    client.once("connect", onConnect);
    client.once("error", onError);
  });
  log.info({ url: opts.url }, "mqtt connected");

  return {
    publish(topic, payload, { qos, retain }) {
      return new Promise((resolve, reject) => {
        client.publish(topic, payload, { qos, retain }, (err) => (err ? reject(err) : resolve()));
      });
    },
    subscribe(filter, handler, subOpts) {
      handlers.push({ filter, handler });
      const wire = subOpts?.shareGroup ? `$share/${subOpts.shareGroup}/${filter}` : filter;
      return new Promise((resolve, reject) => {
        client.subscribe(wire, { qos: 1 }, (err, granted) => {
          if (err) return reject(err);
          if (granted?.some((g) => g.qos === 128)) return reject(new Error(`subscription to ${wire} refused`));
          resolve();
        });
      });
    },
    onLink: (listener) => void linkListeners.push(listener),
    readRetained(filter, { quietMs, maxMs }) {
      const found = new Map<string, Buffer>();
      let last = Date.now();
      const onMessage = (topic: string, payload: Buffer, packet: { retain?: boolean }) => {
        if (!packet.retain || !topicMatches(filter, topic)) return;
        found.set(topic, payload);
        last = Date.now();
      };
      client.on("message", onMessage);
      return new Promise<Map<string, Buffer>>((resolve, reject) => {
        client.subscribe(filter, { qos: 1 }, (err) => {
          if (err) {
            client.off("message", onMessage);
            return reject(err);
          }
          const started = Date.now();
          last = started;
          const poll = setInterval(
            () => {
              const now = Date.now();
              if (now - last < quietMs && now - started < maxMs) return;
              clearInterval(poll);
              client.off("message", onMessage);
              client.unsubscribe(filter, () => resolve(found));
            },
            Math.max(10, Math.floor(quietMs / 4)),
          );
        });
      });
    },
    close() {
      ending = true;
      return new Promise((resolve) => client.end(false, {}, () => resolve()));
    },
  };
}
