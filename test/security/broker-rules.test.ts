import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTopics } from "../../shared/topics.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  BROKER_KINDS,
  type BrokerFixture,
  type Creds,
  closed,
  connectOk,
  mosquittoAvailable,
  observe,
  serverMetric,
  sleep,
  startBrokerFixture,
  subscribeCodes,
  tryConnect,
} from "./broker-probe.js";

/**
 * Broker rules (architecture.md §4, issues 7 and 20 §5) against the embedded aedes broker and against a real
 * Mosquitto run with the dynamic-security files `broker-config --mosquitto` generates, the fleet
 * server administering it live. Device A attacks device B; every case asserts the attack fails AND
 * B's state on the broker (its retained `desired`, `reported` and `presence`) is exactly what it was.
 * The same assertions on both brokers, except where docs/security.md states a difference.
 */
const topics = createTopics();
const B_REPORTED = JSON.stringify({ honest: "B" });
const B_DESIRED = JSON.stringify({ for: "B" });

for (const kind of BROKER_KINDS) {
  describe.skipIf(kind === "mosquitto" && !mosquittoAvailable)(`security: broker rules on ${kind}`, () => {
    let tmp: Awaited<ReturnType<typeof makeTempDir>>;
    let fx: BrokerFixture;
    let a: Creds;
    let b: Creds;
    let victim: MqttClient;

    const bTopic = (k: Parameters<typeof topics.device>[1]) => topics.device(b.id, k);
    const asA = (extra: Record<string, unknown> = {}) =>
      tryConnect(fx.url, { clientId: a.id, username: a.id, password: a.password, ...extra });

    /** B's retained state as a fresh server-side subscriber sees it. */
    async function retainedOfB(): Promise<Record<string, string>> {
      const o = await observe(fx, `${topics.prefix}/d/${b.id}/#`);
      await sleep(300);
      await o.close();
      return Object.fromEntries(o.seen.filter((m) => m.retain).map((m) => [m.topic.split("/").pop()!, m.payload]));
    }

    async function expectBUnchanged(): Promise<void> {
      expect(await retainedOfB()).toEqual({ desired: B_DESIRED, reported: B_REPORTED, presence: "online" });
      expect(victim.connected).toBe(true);
    }

    async function publishDesiredOfB(): Promise<void> {
      const server = await fx.connectServerSide(`srv-${kind}-${Math.random().toString(16).slice(2, 8)}`);
      await server.publishAsync(bTopic("desired"), B_DESIRED, { qos: 1, retain: true });
      await server.endAsync();
    }

    beforeAll(async () => {
      tmp = await makeTempDir("ef-brk-");
      // Both enrolled live (on Mosquitto: through dynamic security, after the broker started).
      fx = await startBrokerFixture(tmp.path, kind);
      a = await fx.enroll(`${kind}-a`);
      b = await fx.enroll(`${kind}-b`);
      victim = await connectOk(fx.url, {
        clientId: b.id,
        username: b.id,
        password: b.password,
        will: { topic: bTopic("presence"), payload: Buffer.from("offline"), qos: 1, retain: true },
      });
      await victim.publishAsync(bTopic("reported"), B_REPORTED, { qos: 1, retain: true });
      await victim.publishAsync(bTopic("presence"), "online", { qos: 1, retain: true });
      await publishDesiredOfB();
      await expectBUnchanged();
    });

    afterAll(async () => {
      await victim?.endAsync(true);
      await fx?.close();
      await tmp?.cleanup();
    });

    it("A publishing on B's topics is dropped; B's retained state stays", async () => {
      const spy = await observe(fx, `${topics.prefix}/d/+/reported`);
      const evil = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.password });
      evil.publish(bTopic("reported"), "forged", { qos: 0, retain: true });
      evil.publish(bTopic("presence"), "offline", { qos: 0, retain: true });
      // A barrier on A's own topic: if it arrives, anything A sent before it has been routed.
      evil.publish(topics.device(a.id, "reported"), "barrier", { qos: 0 });
      await sleep(800);
      expect(spy.on(bTopic("reported")).map((m) => m.payload)).not.toContain("forged");
      await spy.close();
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("A subscribing to B's topics is refused (SUBACK 0x80) and gets nothing of B's", async () => {
      const evil = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      expect(await subscribeCodes(evil, bTopic("desired"))).toEqual([128]);
      // Its own topics are granted on the same connection.
      expect(await subscribeCodes(evil, topics.device(a.id, "desired"))).toEqual([1]);
      await publishDesiredOfB();
      await sleep(500);
      expect(got).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("A's wildcard subscriptions ('#', '+' levels) are refused with SUBACK 0x80 and receive nothing", async () => {
      // issue 20 §5: Mosquitto with an ACL file granted these (delivering nothing); now refused on both.
      const evil = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      const codes = [
        ...(await subscribeCodes(evil, "#")),
        ...(await subscribeCodes(evil, `${topics.prefix}/d/+/desired`)),
        ...(await subscribeCodes(evil, `${topics.prefix}/d/${a.id}/+`)),
        ...(await subscribeCodes(evil, `${topics.prefix}/#`)),
      ];
      expect(codes).toEqual([128, 128, 128, 128]);
      await victim.publishAsync(bTopic("events"), JSON.stringify({ type: "probe" }), { qos: 1 });
      await publishDesiredOfB();
      await sleep(500);
      expect(got).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("A subscribing to $SYS is refused and gets nothing", async () => {
      const evil = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      expect(await subscribeCodes(evil, "$SYS/#")).toEqual([128]);
      await sleep(500);
      expect(got).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("a wildcard or foreign client id, or a wildcard username, is refused; taking over B's client id does not kick B", async () => {
      for (const clientId of ["a+", "a#", "a/b", `${a.id}-2`]) expect(await asA({ clientId })).toBeInstanceOf(Error);
      for (const username of ["+", "#", `${a.id}/x`]) {
        expect(await tryConnect(fx.url, { clientId: "x", username, password: a.password })).toBeInstanceOf(Error);
      }
      expect(await asA({ clientId: b.id })).toBeInstanceOf(Error);
      await sleep(300);
      await expectBUnchanged();
    });

    it("A setting its Last Will on B's presence: never published; B stays online", async () => {
      const r = await asA({
        will: { topic: bTopic("presence"), payload: Buffer.from("offline"), qos: 1, retain: true },
      });
      // aedes judges a will at CONNECT; Mosquitto only when it would publish it (ACL: not A's topic).
      if (kind === "aedes") expect(r).toBeInstanceOf(Error);
      if (!(r instanceof Error)) r.stream.destroy();
      await sleep(800);
      await expectBUnchanged();
    });

    it("a will other than `offline` on the own presence, or on another own topic: aedes refuses; the server ignores what Mosquitto publishes", async () => {
      const spy = await observe(fx, `${topics.prefix}/d/${a.id}/+`);
      const wills = [
        { topic: topics.device(a.id, "presence"), payload: "online" },
        { topic: topics.device(a.id, "presence"), payload: "garbage" },
        { topic: topics.device(a.id, "reported"), payload: "not a reported state" },
      ];
      for (const will of wills) {
        const r = await asA({ will: { ...will, payload: Buffer.from(will.payload), qos: 1, retain: false } });
        if (kind === "aedes") {
          expect(r, `${will.topic} ${will.payload}`).toBeInstanceOf(Error);
        } else {
          // Mosquitto cannot tell a will from a publish the device may make itself (docs/security.md).
          expect(r).not.toBeInstanceOf(Error);
          if (!(r instanceof Error)) r.stream.destroy();
        }
      }
      // The agent's own will is fine everywhere.
      const ok = await asA({
        will: { topic: topics.device(a.id, "presence"), payload: Buffer.from("offline"), qos: 1, retain: false },
      });
      expect(ok).not.toBeInstanceOf(Error);
      if (!(ok instanceof Error)) ok.stream.destroy();
      await sleep(800);
      const published = spy.seen.map((m) => m.payload);
      expect(published).toContain("offline");
      if (kind === "aedes") expect(published).toEqual(["offline"]);
      await spy.close();
      // Whatever was published, A's record on the server holds no garbage: the last will, `offline`,
      // is its presence, and nothing unparsable became its reported state.
      const dev = (await fx.api.getDevice(a.id)) as { presence: string; reported: unknown };
      expect(dev.presence).toBe("offline");
      expect(dev.reported ?? null).toBeNull();
      await expectBUnchanged();
    });

    it("the server's MQTT identity cannot take over the server's session unnoticed", async () => {
      const before = await serverMetric(fx.server, "edgefleet_broker_disconnects_total");
      expect(before).toBe(0);
      const takeover = await tryConnect(fx.url, { clientId: fx.server.mqttClientId, ...fx.serverCreds });
      if (kind === "aedes") {
        // Refused over the network, right password and all; other client ids too.
        expect(takeover).toBeInstanceOf(Error);
        expect(await tryConnect(fx.url, { clientId: "elsewhere", ...fx.serverCreds })).toBeInstanceOf(Error);
        await sleep(300);
        expect(await serverMetric(fx.server, "edgefleet_broker_disconnects_total")).toBe(0);
      } else {
        // Mosquitto lets a client with the same credentials and client id take the session over:
        // the server notices (an error log and the counter) and takes it back.
        expect(takeover).not.toBeInstanceOf(Error);
        if (!(takeover instanceof Error)) await closed(takeover);
        for (;;) {
          if ((await serverMetric(fx.server, "edgefleet_broker_disconnects_total")) >= 1) break;
          await sleep(100);
        }
        expect(fx.logs.some((l) => l.level === 50 && /took over this server's session/.test(l.msg))).toBe(true);
      }
      // The server still works: it publishes, and (Mosquitto) administers dynamic security live.
      const c = await fx.enroll(`${kind}-after-takeover`);
      const dev = await connectOk(fx.url, { clientId: c.id, username: c.id, password: c.password });
      await dev.endAsync(true);
      await expectBUnchanged();
    });

    // Last: revocation changes B for good.
    it("revoking a connected device disconnects it at once and refuses it from then on; A is untouched", async () => {
      const stillA = await connectOk(fx.url, { clientId: a.id, username: a.id, password: a.password });
      const spy = await observe(fx, bTopic("presence"));
      const gone = closed(victim);
      await fx.revoke(b.id);
      // issue 20 §5: on Mosquitto too (dynamic security), not at the next file regeneration.
      await gone;
      expect(victim.connected).toBe(false);
      const again = await tryConnect(fx.url, { clientId: b.id, username: b.id, password: b.password });
      expect(again).toBeInstanceOf(Error);
      await sleep(300);
      // Its will (`offline`) was not published, and its retained state is cleared.
      expect(spy.seen.filter((m) => !m.retain && m.payload === "offline")).toEqual([]);
      await spy.close();
      expect(await retainedOfB()).toEqual({});
      expect(stillA.connected).toBe(true);
      await stillA.endAsync(true);
      const a2 = await tryConnect(fx.url, { clientId: a.id, username: a.id, password: a.password });
      expect(a2).not.toBeInstanceOf(Error);
      if (!(a2 instanceof Error)) await a2.endAsync(true);
    });
  });
}
