import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type BackoffOptions, fullJitterDelay } from "../../../agent/transport/backoff.js";
import { createMqttLink, type MqttLink } from "../../../agent/transport/mqtt-link.js";
import { systemClock } from "../../../shared/clock.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { createTopics } from "../../../shared/topics.js";
import { startTcpProxy, type TcpProxy } from "../../helpers/tcp-proxy.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import {
  BROKER_KINDS,
  type BrokerFixture,
  type Creds,
  mosquittoAvailable,
  observe,
  sleep,
  startBrokerFixture,
  until,
} from "../../security/broker-probe.js";

/**
 * The agent's MQTT link (agent/transport/mqtt-link.ts) on a flaky network (issue 23): the real link,
 * a real fleet server with either broker (embedded aedes; Mosquitto with dynamic security), and a
 * TCP proxy between them that resets, refuses and black-holes connections. Real time with short backoff and keepalive; no assertion on durations:
 * the backoff is checked through the delays the link schedules, replayed from the same seed.
 */
const topics = createTopics();
const BACKOFF: BackoffOptions = { baseMs: 40, capMs: 400 };

interface LogLine {
  msg: string;
  delay?: number;
  attempt?: number;
}

for (const kind of BROKER_KINDS) {
  describe.skipIf(kind === "mosquitto" && !mosquittoAvailable)(
    `agent MQTT link through a flaky network to ${kind}`,
    () => {
      let tmp: Awaited<ReturnType<typeof makeTempDir>>;
      let fx: BrokerFixture;
      let proxy: TcpProxy;
      let link: MqttLink | null = null;
      let n = 0;

      beforeAll(async () => {
        tmp = await makeTempDir("ef-link-");
        fx = await startBrokerFixture(tmp.path, kind);
      });

      afterEach(async () => {
        await link?.close();
        link = null;
        await proxy?.close();
      });

      afterAll(async () => {
        await fx?.close();
        await tmp?.cleanup();
      });

      /** A device of its own, a fresh proxy and a started link with the agent's subscriptions. */
      async function startLink(extra: { keepaliveSec?: number; maxQueuedOffline?: number } = {}) {
        const d: Creds = await fx.enroll(`${kind}-link-${++n}`);
        proxy = await startTcpProxy({ port: Number(new URL(fx.url).port) });
        const logs: LogLine[] = [];
        const sink = new Writable({
          write(chunk: Buffer, _enc, done) {
            for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) logs.push(JSON.parse(line));
            done();
          },
        });
        const t = (k: Parameters<typeof topics.device>[1]) => topics.device(d.id, k);
        const messages: { topic: string; payload: string }[] = [];
        const l = createMqttLink({
          url: proxy.url,
          deviceId: d.id,
          password: d.password,
          topics,
          subscriptions: [t("desired"), t("chunks/res"), t("telemetry/ack"), topics.trustRoot()],
          log: pino({ level: "debug" }, sink),
          clock: systemClock,
          random: seededRandom(n),
          backoff: BACKOFF,
          connectTimeoutMs: 2000,
          ...extra,
        });
        l.onMessage((topic, payload) => messages.push({ topic, payload: payload.toString() }));
        l.start();
        link = l;
        await until("the link's first connection", () => l.state() === "connected");
        const scheduled = () => logs.filter((x) => x.msg === "mqtt reconnect scheduled");
        return { d, t, link: l, logs, messages, scheduled, seed: n };
      }

      const serverPublish = async (topic: string, payload: string) => {
        const s = await fx.connectServerSide(`srv-link-${Math.random().toString(16).slice(2, 8)}`);
        await s.publishAsync(topic, payload, { qos: 1, retain: true });
        await s.endAsync();
      };

      /** The retained value of a topic as a fresh server-side subscriber sees it. */
      async function retained(topic: string): Promise<string | undefined> {
        const o = await observe(fx, topic);
        await sleep(150);
        await o.close();
        return o.seen.find((m) => m.retain)?.payload;
      }

      it("after a reset it reconnects with full-jitter backoff, resubscribes and gets the desired state published while it was away", async () => {
        const { t, link: l, messages, scheduled, seed } = await startLink();
        proxy.refuse(); // the broker is unreachable: every attempt is reset at once
        proxy.reset();
        await until("four failed attempts", () => scheduled().length >= 4);
        await serverPublish(t("desired"), "while away");
        proxy.accept();
        await until("the link back", () => l.state() === "connected");
        await until("the retained desired state", () => messages.some((m) => m.payload === "while away"));
        // Each delay is full jitter for its attempt (`random * min(cap, base * 2^attempt)`), in order,
        // from the link's own random source: replaying the seed gives the same delays.
        const replay = seededRandom(seed);
        const delays = scheduled().map((s) => s.delay);
        expect(scheduled().map((s) => s.attempt)).toEqual(delays.map((_, i) => i + 1));
        expect(delays).toEqual(delays.map((_, i) => fullJitterDelay(i, replay, BACKOFF)));
        // A successful connection starts the backoff over.
        const before = scheduled().length;
        proxy.reset();
        await until("the next reconnect scheduled", () => scheduled().length > before);
        expect(scheduled()[before]?.attempt).toBe(1);
        await until("the link back again", () => l.state() === "connected");
      });

      it("a half-open connection is noticed by keepalive; the link reconnects and receives what was published meanwhile", async () => {
        const { t, link: l, messages } = await startLink({ keepaliveSec: 1 });
        const states: string[] = [];
        l.onState((s) => states.push(s));
        proxy.drop(); // no FIN, no RST: only a missing PINGRESP tells
        await serverPublish(t("desired"), "during the black hole");
        await until("the link noticing the dead connection", () => states.includes("disconnected"), 10_000);
        await until("the link back", () => l.state() === "connected");
        await until("the desired state", () => messages.some((m) => m.payload === "during the black hole"));
        // The new connection took the stale session over on the broker (its will, `offline`, was
        // published then); the link's `online` after connecting is the last word.
        expect(await retained(t("presence"))).toBe("online");
        expect(proxy.live()).toBe(1);
      });

      it("publishes made while disconnected go out after it is back, up to its bound; presence ends online", async () => {
        const { t, link: l, logs, scheduled } = await startLink({ maxQueuedOffline: 2 });
        const spy = await observe(fx, `${topics.prefix}/d/+/#`);
        proxy.refuse();
        proxy.reset();
        await until("the link down", () => l.state() !== "connected");
        l.publish(t("reported"), JSON.stringify({ queued: 1 }), { qos: 1, retain: true });
        l.publish(t("events"), JSON.stringify({ queued: 2 }), { qos: 1 });
        l.publish(t("events"), JSON.stringify({ queued: 3 }), { qos: 1 }); // over the bound: dropped
        // Kept across failed attempts too (each attempt used to start from empty stores).
        await until("two refused attempts", () => scheduled().length >= 2);
        proxy.accept();
        await until("the link back", () => l.state() === "connected");
        l.publish(t("events"), JSON.stringify({ fresh: 1 }), { qos: 1 });
        // What mqtt.js kept goes out before `connect`, so before this one.
        await until("the fresh event", () => spy.seen.some((m) => m.payload.includes("fresh")));
        await spy.close();
        expect(spy.seen.filter((m) => /queued|fresh/.test(m.payload)).map((m) => m.payload)).toEqual([
          JSON.stringify({ queued: 1 }),
          JSON.stringify({ queued: 2 }),
          JSON.stringify({ fresh: 1 }),
        ]);
        expect(logs.filter((x) => x.msg === "mqtt offline queue full; dropping publishes")).toHaveLength(1);
        expect(await retained(t("reported"))).toBe(JSON.stringify({ queued: 1 }));
        expect(await retained(t("presence"))).toBe("online");
      });

      it("a reported state whose PUBACK was lost in a reset is re-sent after the reconnect", async () => {
        const { t, link: l } = await startLink();
        const spy = await observe(fx, t("reported"));
        proxy.pause("down");
        l.publish(t("reported"), JSON.stringify({ v: "ack lost" }), { qos: 1, retain: true });
        await until("the broker routing it", () => spy.seen.length >= 1);
        proxy.reset();
        proxy.resume();
        await until("the re-sent copy", () => spy.seen.length >= 2);
        await until("the link back", () => l.state() === "connected");
        expect(spy.seen.map((m) => m.payload)).toEqual([
          JSON.stringify({ v: "ack lost" }),
          JSON.stringify({ v: "ack lost" }),
        ]);
        await spy.close();
      });
    },
  );
}
