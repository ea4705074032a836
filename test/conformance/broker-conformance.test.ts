import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTopics, DEVICE_PUBLISHES, DEVICE_SUBSCRIBES } from "../../shared/topics.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  BROKER_KINDS,
  type BrokerFixture,
  type Creds,
  closed,
  connectOk,
  mosquittoAvailable,
  observe,
  sleep,
  startBrokerFixture,
  subscribeCodes,
  until,
} from "../security/broker-probe.js";

/**
 * Broker conformance (issue 23): the MQTT behaviours the product relies on, one table run against
 * the embedded aedes broker and a real Mosquitto configured by the project's own files (dynamic
 * security, the fleet server administering it). The negative side of access control (a device on
 * another's topics, wildcards, $SYS, foreign client ids, wills, revocation) is in
 * test/security/broker-rules.test.ts on the same fixture; docs/operations.md has the whole table.
 *
 * Both sides use clean sessions (agent/transport/mqtt-link.ts, fleet-server/broker/transport.ts),
 * so what the product relies on is: retained state (the latest value, on every subscribe),
 * subscriptions re-made on every connect, and the client re-sending its unacknowledged QoS 1
 * publishes after a reconnect (at least once: duplicates happen). Nothing relies on a broker
 * queueing messages for an absent client.
 */
const topics = createTopics();

interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

function record(client: MqttClient): Received[] {
  const got: Received[] = [];
  client.on("message", (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  return got;
}

for (const kind of BROKER_KINDS) {
  describe.skipIf(kind === "mosquitto" && !mosquittoAvailable)(`broker conformance on ${kind}`, () => {
    let tmp: Awaited<ReturnType<typeof makeTempDir>>;
    let fx: BrokerFixture;
    let proxy: TcpProxy;
    const open: MqttClient[] = [];
    let n = 0;

    /** A device of its own per test, so every test stands alone. */
    const device = () => fx.enroll(`${kind}-conf-${++n}`);
    const asDevice = async (d: Creds, extra: IClientOptions = {}, url = fx.url) => {
      const c = await connectOk(url, { clientId: d.id, username: d.id, password: d.password, clean: true, ...extra });
      open.push(c);
      return c;
    };
    const serverPublish = async (topic: string, payload: string, retain: boolean) => {
      const s = await fx.connectServerSide(`srv-conf-${Math.random().toString(16).slice(2, 8)}`);
      await s.publishAsync(topic, payload, { qos: 1, retain });
      await s.endAsync();
    };

    beforeAll(async () => {
      tmp = await makeTempDir("ef-conf-");
      fx = await startBrokerFixture(tmp.path, kind);
      proxy = await startTcpProxy({ port: Number(new URL(fx.url).port) });
    });

    afterAll(async () => {
      for (const c of open) c.end(true);
      await proxy?.close();
      await fx?.close();
      await tmp?.cleanup();
    });

    it("ACL, own side: the agent's literal subscriptions are granted QoS 1 and everything it publishes reaches the server", async () => {
      const d = await device();
      const c = await asDevice(d);
      const filters = [...DEVICE_SUBSCRIBES.map((k) => topics.device(d.id, k)), topics.trustRoot()];
      for (const f of filters) expect(await subscribeCodes(c, f), f).toEqual([1]);
      const spy = await observe(fx, `${topics.prefix}/d/${d.id}/#`);
      for (const k of DEVICE_PUBLISHES) await c.publishAsync(topics.device(d.id, k), `own ${k}`, { qos: 1 });
      await until("the device's publishes", () => spy.seen.length >= DEVICE_PUBLISHES.length);
      expect(spy.seen.map((m) => m.payload).sort()).toEqual(DEVICE_PUBLISHES.map((k) => `own ${k}`).sort());
      await spy.close();
    });

    it("retained desired: only the latest value, flagged retained, on every subscribe; nothing queued for an absent clean-session device", async () => {
      const d = await device();
      const desired = topics.device(d.id, "desired");
      for (const v of ["v1", "v2", "v3"]) await serverPublish(desired, v, true);
      const c = await asDevice(d);
      const got = record(c);
      await c.subscribeAsync(desired, { qos: 1 });
      await until("the retained desired state", () => got.length >= 1);
      // A live update arrives unflagged (MQTT 3.1.1 §3.3.1.3), after the retained one.
      await serverPublish(desired, "v4", true);
      await until("the live desired state", () => got.length >= 2);
      expect(got.map((m) => [m.payload, m.retain])).toEqual([
        ["v3", true],
        ["v4", false],
      ]);
      // Re-subscribing on a new connection (what the agent does on every connect) gets v4 again.
      await c.endAsync();
      const again = await asDevice(d);
      const got2 = record(again);
      await again.subscribeAsync(desired, { qos: 1 });
      await until("the retained desired state after reconnecting", () => got2.length >= 1);
      await sleep(200);
      expect(got2.map((m) => [m.payload, m.retain])).toEqual([["v4", true]]);
    });

    it("reconnect: a clean session after a connection reset has no subscriptions until the client makes them again", async () => {
      const d = await device();
      const ack = topics.device(d.id, "telemetry/ack");
      const first = await asDevice(d, {}, proxy.url);
      await first.subscribeAsync(ack, { qos: 1 });
      const gone = closed(first);
      proxy.reset();
      await gone;
      const second = await asDevice(d, {}, proxy.url);
      const got = record(second);
      // PUBACK to the server means the broker has routed it: to nobody, the old subscription is gone.
      await serverPublish(ack, "before resubscribe", false);
      await second.subscribeAsync(ack, { qos: 1 });
      await serverPublish(ack, "after resubscribe", false);
      await until("the message after resubscribing", () => got.length >= 1);
      expect(got.map((m) => m.payload)).toEqual(["after resubscribe"]);
    });

    it("session takeover: a second connection with the device's client id closes the first; its presence ends `online`", async () => {
      const d = await device();
      const presence = topics.device(d.id, "presence");
      const will = { topic: presence, payload: Buffer.from("offline"), qos: 1 as const, retain: true };
      const first = await asDevice(d, { will });
      await first.publishAsync(presence, "online", { qos: 1, retain: true });
      const spy = await observe(fx, presence);
      await until("the retained presence", () => spy.seen.length >= 1);
      const firstClosed = closed(first);
      // What the agent does when its old connection is half-open and the broker has not noticed yet.
      const second = await asDevice(d, { will });
      await firstClosed;
      await second.publishAsync(presence, "online", { qos: 1, retain: true });
      await until("the second connection's presence", () => spy.seen.length >= 2);
      await sleep(300);
      expect(second.connected).toBe(true);
      // Whatever the broker does with the first connection's will, it comes before the new `online`.
      console.log("TAKEOVER", kind, JSON.stringify(spy.seen));
      expect(spy.seen.at(-1)?.payload).toBe("online");
      await spy.close();
      const fresh = await observe(fx, presence);
      await until("the retained presence", () => fresh.seen.length >= 1);
      expect(fresh.seen.map((m) => [m.payload, m.retain])).toEqual([["online", true]]);
      await fresh.close();
    });

    it("QoS 1, at least once: a publish whose PUBACK was lost is re-sent after the reconnect and delivered again", async () => {
      const d = await device();
      const events = topics.device(d.id, "events");
      const spy = await observe(fx, events);
      // The client the way the agent's link sets it up: clean session, its own reconnects.
      const c = mqtt.connect(proxy.url, {
        clientId: d.id,
        username: d.id,
        password: d.password,
        protocolVersion: 4,
        clean: true,
        reconnectPeriod: 100,
      });
      open.push(c);
      await new Promise<void>((resolve) => c.once("connect", () => resolve()));
      proxy.pause("down"); // the broker gets the publish; its PUBACK never reaches the client
      const acked = c.publishAsync(events, "ack lost", { qos: 1 });
      await until("the broker routing the publish", () => spy.seen.length >= 1);
      proxy.reset();
      proxy.resume();
      await acked; // resolved by the PUBACK of the re-sent copy
      await c.publishAsync(events, "after the reconnect", { qos: 1 });
      await until("the messages after the reconnect", () => spy.seen.length >= 3);
      expect(spy.seen.map((m) => m.payload)).toEqual(["ack lost", "ack lost", "after the reconnect"]);
      await spy.close();
    });
  });
}
