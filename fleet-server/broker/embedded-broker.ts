import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:net";
import { type Duplex, duplexPair } from "node:stream";
import { createServer as createTlsServer } from "node:tls";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import {
  hasTopicMetacharacters,
  type Identity,
  isValidDeviceUsername,
  mayPublish,
  maySubscribe,
  mayWill,
} from "./acl.js";

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  topics: Topics;
  log: Logger;
  server: { username: string; password: string };
  /** Device credential check (password hash in the store, fleet-server/devices/password.ts). */
  authenticateDevice(deviceId: string, password: string): Promise<boolean>;
  /** Operator-supplied certificate and key (PEM): serve MQTT over TLS (`mqtts://`) only. */
  tls?: { cert: Buffer; key: Buffer };
}

export interface EmbeddedBroker {
  port: number;
  /** Drops a device's live connection (revocation); its Will is not published. */
  disconnect(deviceId: string): Promise<void>;
  /**
   * A new in-process connection to the broker: the only place the server's MQTT identity is
   * accepted (issue 20 §5), so that identity cannot be used, nor its session taken over, from the
   * network. Give it to the server's own MQTT client (and in-process tools).
   */
  connectInProcess(): Duplex;
  close(): Promise<void>;
}

function sameSecret(a: string, b: string): boolean {
  // Hash first so timingSafeEqual gets equal lengths and the length itself leaks nothing.
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

function authError(message: string, returnCode = 4): AuthenticateError {
  // 4 = BAD_USERNAME_OR_PASSWORD, 2 = IDENTIFIER_REJECTED (const enum in aedes' typings, not importable as a value).
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * The Will of the CONNECT being authenticated: aedes sets `_will` before calling authenticate, and
 * never runs authorizePublish for a will, so this is the one place to judge it (issue 20 §5).
 */
function pendingWill(client: Client): { topic: string; payload: Buffer } | undefined {
  const will = (client as unknown as { _will?: { topic?: string; payload?: Buffer | string } | null })._will;
  if (!will || typeof will.topic !== "string") return undefined;
  return { topic: will.topic, payload: Buffer.from(will.payload ?? "") };
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { topics, log } = opts;
  const identities = new WeakMap<Client, Identity>();
  // Broker-side ends of the server's in-process connections (see connectInProcess).
  const inProcess = new WeakSet<object>();

  const aedes = await Aedes.createBroker({
    // Device ids may be up to 128 characters and the client id must equal the device id.
    maxClientsIdLength: 160,
    authenticate(client, username, password, done) {
      const pw = password?.toString("utf8") ?? "";
      if (username === undefined) return done(authError("username required"), false);
      if (hasTopicMetacharacters(client.id)) {
        log.warn({ clientId: client.id }, "mqtt connect refused: client id holds + # or /");
        return done(authError("client id may not hold + # /", 2), false);
      }
      const will = pendingWill(client);
      if (username === opts.server.username) {
        if (!inProcess.has((client as unknown as { conn: object }).conn)) {
          // Right password or not: the server's identity is never accepted from the network, so a
          // leaked server-mqtt.json neither acts as the server nor takes over its session.
          log.error({ clientId: client.id }, "mqtt connect refused: the server's identity from outside the server");
          return done(authError("not authorized", 5), false);
        }
        if (!sameSecret(pw, opts.server.password)) return done(authError("bad credentials"), false);
        if (will !== undefined && !mayWill(topics, { kind: "server" }, will.topic, will.payload)) {
          return done(authError("will topic not allowed", 5), false);
        }
        identities.set(client, { kind: "server" });
        return done(null, true);
      }
      if (!isValidDeviceUsername(username) || client.id !== username) {
        log.warn({ clientId: client.id }, "mqtt connect refused: client id must equal a valid device id");
        return done(authError("client id must equal username"), false);
      }
      opts.authenticateDevice(username, pw).then(
        (ok) => {
          if (!ok) {
            log.warn({ deviceId: username }, "mqtt connect refused: bad credentials");
            return done(authError("bad credentials"), false);
          }
          const who: Identity = { kind: "device", deviceId: username };
          if (will !== undefined && !mayWill(topics, who, will.topic, will.payload)) {
            log.warn(
              { deviceId: username, will: will.topic },
              "mqtt connect refused: will other than `offline` on own presence",
            );
            // 5 = NOT_AUTHORIZED: the credentials are fine, the request is not.
            return done(authError("will topic not allowed", 5), false);
          }
          identities.set(client, who);
          done(null, true);
        },
        (err: unknown) => {
          log.error({ err }, "device authentication failed");
          done(authError("authentication error"), false);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      // client is null for wills of clients gone before a restart; in-memory persistence has none.
      const who = client ? identities.get(client) : undefined;
      if (who && mayPublish(topics, who, packet.topic)) return callback(null);
      log.warn({ clientId: client?.id, topic: packet.topic }, "mqtt publish refused by ACL");
      // MQTT 3.1.1 has no negative PUBACK: aedes closes the connection (MQTT-3.3.5-2).
      callback(new Error(`publish to ${packet.topic} not allowed`));
    },
    authorizeSubscribe(client, sub, callback) {
      const who = identities.get(client);
      if (who && maySubscribe(topics, who, sub.topic)) return callback(null, sub);
      log.warn({ clientId: client.id, topic: sub.topic }, "mqtt subscribe refused by ACL");
      // null → SUBACK return code 128 (failure) for this filter; the connection stays up.
      callback(null, null);
    },
  });

  const server: Server = opts.tls
    ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2", noDelay: true }, aedes.handle)
    : // No Nagle: MQTT is small request/answer packets (PUBACKs, chunk requests); see mqtt-link.ts.
      createServer({ noDelay: true }, aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  log.info({ host: opts.host, port }, "embedded mqtt broker listening");

  return {
    port,
    async disconnect(deviceId) {
      // aedes's type declarations omit its `clients` map and a client's `will`, `_will` and `conn`
      // (used above): the casts here name exactly the fields read, nothing more.
      const client = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[deviceId];
      if (!client) return;
      // Clear the will first: a revoked device must not get one last retained `offline` in.
      (client as unknown as { will: unknown }).will = null;
      await new Promise<void>((resolve) => client.close(() => resolve()));
    },
    connectInProcess() {
      const [brokerSide, clientSide] = duplexPair();
      // A pair's halves do not close together by themselves; a socket's ends would.
      brokerSide.once("close", () => clientSide.destroy());
      clientSide.once("close", () => brokerSide.destroy());
      inProcess.add(brokerSide);
      aedes.handle(brokerSide);
      return clientSide;
    },
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
