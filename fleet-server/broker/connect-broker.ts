import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import { dialHost, type FleetServerConfig } from "../config.js";
import { type BrokerAccess, embeddedBrokerAccess } from "./broker-access.js";
import { startEmbeddedBroker } from "./embedded-broker.js";
import { connectTransport, type Transport } from "./transport.js";

export interface BrokerConnection {
  /** Where devices dial the broker. */
  mqttUrl: string;
  /** The server's own MQTT client, and its client id. */
  transport: Transport;
  clientId: string;
  /** The embedded broker's in-process stream (tests, the server's own identity); null for an external broker. */
  mqttInProcess: (() => Duplex) | null;
  /** Device admission/revocation on the embedded broker; null for an external one (the caller picks). */
  embeddedAccess: BrokerAccess | null;
}

/**
 * The fleet server's broker (architecture.md §4): the embedded aedes broker on its own listener, the
 * server connected to it in-process (issue 20 §5: its identity is accepted only there), or an external
 * broker at `config.mqttUrl`. What it starts is pushed onto `closers` (closed in reverse by the caller).
 */
export async function connectBroker(deps: {
  config: FleetServerConfig;
  topics: Topics;
  log: Logger;
  serverMqtt: { username: string; password: string };
  authenticateDevice(deviceId: string, password: string): Promise<boolean>;
  closers: (() => Promise<void> | void)[];
  tls?: { cert: Buffer; key: Buffer };
  tlsCa?: Buffer;
}): Promise<BrokerConnection> {
  const { config, log, tls } = deps;
  const clientId = `fleet-server-${randomBytes(6).toString("hex")}`;
  if (config.mqttUrl !== undefined) {
    const transport = await connectTransport({
      url: config.mqttUrl,
      ...(config.mqttUsername !== undefined ? { username: config.mqttUsername } : {}),
      ...(config.mqttPassword !== undefined ? { password: config.mqttPassword } : {}),
      ...(deps.tlsCa ? { ca: deps.tlsCa } : {}),
      clientId,
      log: log.child({ component: "mqtt" }),
    });
    return { mqttUrl: config.mqttUrl, transport, clientId, mqttInProcess: null, embeddedAccess: null };
  }
  const host = config.mqttHost ?? config.httpHost;
  const broker = await startEmbeddedBroker({
    host,
    port: config.mqttPort,
    topics: deps.topics,
    log: log.child({ component: "broker" }),
    server: deps.serverMqtt,
    authenticateDevice: deps.authenticateDevice,
    ...(tls ? { tls } : {}),
  });
  deps.closers.push(() => broker.close());
  const mqttUrl = `${tls ? "mqtts" : "mqtt"}://${dialHost(host)}:${broker.port}`;
  const mqttInProcess = () => broker.connectInProcess();
  const transport = await connectTransport({
    url: mqttUrl,
    // The server's identity is accepted only in-process (issue 20 §5), not over the listener.
    stream: mqttInProcess,
    username: deps.serverMqtt.username,
    password: deps.serverMqtt.password,
    clientId,
    log: log.child({ component: "mqtt" }),
  });
  return { mqttUrl, transport, clientId, mqttInProcess, embeddedAccess: embeddedBrokerAccess(broker.disconnect) };
}
