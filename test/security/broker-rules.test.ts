import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTopics } from "../../shared/topics.js";
import { findMosquitto } from "../helpers/mosquitto.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import {
  type BrokerFixture,
  type Creds,
  connectOk,
  observe,
  type RealMosquitto,
  sleep,
  startBrokerFixture,
  startSecuredMosquitto,
  subscribeCodes,
  tryConnect,
} from "./broker-probe.js";

/**
 * Broker rules (DESIGN §4, issue 7) against the embedded aedes broker and against a real
 * Mosquitto configured only by `broker-config --mosquitto` files. Device A attacks device B; every
 * case asserts the attack fails AND B's state on the broker (its retained `desired`, `reported` and
 * `presence`) is exactly what it was.
 */
const topics = createTopics();
const mosquittoAvailable = findMosquitto() !== null;
if (!mosquittoAvailable && process.env.EDGEFLEET_REQUIRE_MOSQUITTO === "1") {
  throw new Error("EDGEFLEET_REQUIRE_MOSQUITTO=1 but mosquitto is not installed");
}

interface BrokerUnderTest {
  url: string;
  /** Revokes B the way an operator would for this broker. */
  revoke(id: string): Promise<void>;
}

const B_REPORTED = JSON.stringify({ honest: "B" });
const B_DESIRED = JSON.stringify({ for: "B" });

for (const kind of ["aedes", "mosquitto"] as const) {
  describe.skipIf(kind === "mosquitto" && !mosquittoAvailable)(`security: broker rules on ${kind}`, () => {
    let tmp: Awaited<ReturnType<typeof makeTempDir>>;
    let fx: BrokerFixture;
    let mosq: RealMosquitto | null = null;
    let broker: BrokerUnderTest;
    let a: Creds;
    let b: Creds;
    let victim: MqttClient;

    const bTopic = (k: Parameters<typeof topics.device>[1]) => topics.device(b.id, k);
    const asA = (extra: Record<string, unknown> = {}) =>
      tryConnect(broker.url, { clientId: a.id, username: a.id, password: a.password, ...extra });

    /** B's retained state as a fresh server-side subscriber sees it. */
    async function retainedOfB(): Promise<Record<string, string>> {
      const o = await observe(broker.url, fx.serverCreds, `${topics.prefix}/d/${b.id}/#`);
      await sleep(300);
      await o.close();
      return Object.fromEntries(o.seen.filter((m) => m.retain).map((m) => [m.topic.split("/").pop()!, m.payload]));
    }

    async function expectBUnchanged(): Promise<void> {
      expect(await retainedOfB()).toEqual({ desired: B_DESIRED, reported: B_REPORTED, presence: "online" });
      expect(victim.connected).toBe(true);
    }

    beforeAll(async () => {
      tmp = await makeTempDir("ef-brk-");
      fx = await startBrokerFixture(tmp.path);
      a = await fx.enroll(`${kind}-a`);
      b = await fx.enroll(`${kind}-b`);
      if (kind === "aedes") {
        broker = {
          url: fx.server.mqttUrl,
          revoke: async (id) => void (await revokeViaApi(fx, id)),
        };
      } else {
        const m = await startSecuredMosquitto(`${tmp.path}/server`, `${tmp.path}/mosquitto`);
        mosq = m;
        broker = {
          url: m.url,
          revoke: async (id) => {
            await revokeViaApi(fx, id);
            await m.reload();
          },
        };
      }
      victim = await connectOk(broker.url, {
        clientId: b.id,
        username: b.id,
        password: b.password,
        will: { topic: bTopic("presence"), payload: Buffer.from("offline"), qos: 1, retain: true },
      });
      await victim.publishAsync(bTopic("reported"), B_REPORTED, { qos: 1, retain: true });
      await victim.publishAsync(bTopic("presence"), "online", { qos: 1, retain: true });
      const server = await connectOk(broker.url, { clientId: `srv-${kind}`, ...fx.serverCreds });
      await server.publishAsync(bTopic("desired"), B_DESIRED, { qos: 1, retain: true });
      await server.endAsync();
      await expectBUnchanged();
    });

    afterAll(async () => {
      await victim?.endAsync(true);
      await mosq?.stop();
      await fx?.close();
      await tmp?.cleanup();
    });

    it("A publishing on B's topics is dropped; B's retained state stays", async () => {
      const spy = await observe(broker.url, fx.serverCreds, `${topics.prefix}/d/+/reported`);
      const evil = await connectOk(broker.url, { clientId: a.id, username: a.id, password: a.password });
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

    it("A subscribing to B's topics gets nothing of B's", async () => {
      const evil = await connectOk(broker.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      const codes = await subscribeCodes(evil, bTopic("desired")).catch(() => [128]);
      if (kind === "aedes") expect(codes).toEqual([128]);
      const server = await connectOk(broker.url, { clientId: `srv2-${kind}`, ...fx.serverCreds });
      await server.publishAsync(bTopic("desired"), B_DESIRED, { qos: 1, retain: true });
      await server.endAsync();
      await sleep(500);
      expect(got).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("A subscribing to '#' (and '+' levels) receives no other device's traffic", async () => {
      const evil = await connectOk(broker.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      const codes = [
        ...(await subscribeCodes(evil, "#").catch(() => [128])),
        ...(await subscribeCodes(evil, `${topics.prefix}/d/+/desired`).catch(() => [128])),
      ];
      if (kind === "aedes") expect(codes).toEqual([128, 128]);
      await victim.publishAsync(bTopic("events"), JSON.stringify({ type: "probe" }), { qos: 1 });
      await sleep(500);
      expect(got.filter((t) => t.includes(`/${b.id}/`))).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("A subscribing to $SYS gets nothing", async () => {
      const evil = await connectOk(broker.url, { clientId: a.id, username: a.id, password: a.password });
      const got: string[] = [];
      evil.on("message", (t) => got.push(t));
      await subscribeCodes(evil, "$SYS/#").catch(() => [128]);
      await sleep(800);
      expect(got).toEqual([]);
      await evil.endAsync(true);
      await expectBUnchanged();
    });

    it("a wildcard client id or username is refused; taking over B's client id does not kick B", async () => {
      for (const clientId of ["a+", "a#", "a/b"]) {
        const r = await asA({ clientId });
        if (kind === "aedes") expect(r).toBeInstanceOf(Error);
        // Mosquitto replaces the client id by the username (use_username_as_clientid).
        if (!(r instanceof Error)) await r.endAsync(true);
      }
      for (const username of ["+", "#", `${a.id}/x`]) {
        const r = await tryConnect(broker.url, { clientId: "x", username, password: a.password });
        expect(r).toBeInstanceOf(Error);
      }
      const takeover = await asA({ clientId: b.id });
      if (kind === "aedes") expect(takeover).toBeInstanceOf(Error);
      if (!(takeover instanceof Error)) await takeover.endAsync(true);
      await sleep(300);
      await expectBUnchanged();
    });

    it("A setting its Last Will on B's presence is refused; B stays online", async () => {
      const r = await asA({
        will: { topic: bTopic("presence"), payload: Buffer.from("offline"), qos: 1, retain: true },
      });
      if (kind === "aedes") expect(r).toBeInstanceOf(Error);
      // Whatever the broker did at CONNECT, an abrupt drop must not publish the will on B's topic.
      if (!(r instanceof Error)) r.stream.destroy();
      await sleep(800);
      await expectBUnchanged();
    });

    // Last: revocation changes B for good.
    it("a revoked device is refused from then on (and on aedes: disconnected, retained state cleared)", async () => {
      const stillA = await connectOk(broker.url, { clientId: a.id, username: a.id, password: a.password });
      await broker.revoke(b.id);
      const again = await tryConnect(broker.url, { clientId: b.id, username: b.id, password: b.password });
      expect(again).toBeInstanceOf(Error);
      if (kind === "aedes") {
        await sleep(300);
        expect(victim.connected).toBe(false);
        expect(await retainedOfB()).toEqual({});
      }
      // Revoking B leaves A alone.
      expect(stillA.connected).toBe(true);
      await stillA.endAsync(true);
      const a2 = await tryConnect(broker.url, { clientId: a.id, username: a.id, password: a.password });
      expect(a2).not.toBeInstanceOf(Error);
      if (!(a2 instanceof Error)) await a2.endAsync(true);
    });
  });
}

async function revokeViaApi(fx: BrokerFixture, id: string): Promise<unknown> {
  const res = await fetch(`${fx.server.httpUrl}/v1/devices/${id}/revoke`, {
    method: "POST",
    headers: { authorization: `Bearer ${fx.server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ reason: "test" }),
  });
  if (res.status !== 200) throw new Error(`revoke ${id}: ${res.status} ${await res.text()}`);
  return res.json();
}
