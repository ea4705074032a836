import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createBrokerLink, MAX_OUTAGES } from "../../../fleet-server/health/broker-link.js";
import { livenessOf, presenceOf, readinessOf } from "../../../fleet-server/health/health-decision.js";
import { createPresenceTracker } from "../../../fleet-server/health/presence-tracker.js";
import { createBrokerMetrics } from "../../../fleet-server/metrics/broker-metrics.js";
import { createFakeClock } from "../../../shared/clock.js";
import { parsePrometheus, promValue } from "../../helpers/prometheus.js";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();
const silent = pino({ level: "silent" });

function linkAt(start = T0) {
  const clock = createFakeClock(start);
  const link = createBrokerLink({ clock, log: silent, kind: "external" });
  return { clock, link };
}

describe("broker link state (issue 20 §4)", () => {
  it("counts a loss once however many reconnect attempts fail, keeping the newest reason", () => {
    const { clock, link } = linkAt();
    let reconnects = 0;
    link.onReconnect(() => reconnects++);
    link.up(); // first connect: not a reconnect
    expect(link.state()).toMatchObject({ connected: true, since: T0, reason: null, disconnects: 0, outages: [] });
    expect(reconnects).toBe(0);

    clock.advance(1000);
    link.down();
    clock.advance(1000);
    link.down("connect ECONNREFUSED 127.0.0.1:1883");
    link.down("connect ECONNREFUSED 127.0.0.1:1883");
    expect(link.state()).toMatchObject({
      connected: false,
      since: T0 + 1000,
      reason: "connect ECONNREFUSED 127.0.0.1:1883",
      disconnects: 1,
      outages: [T0 + 1000],
    });

    clock.advance(5000);
    link.up();
    expect(link.state()).toMatchObject({ connected: true, since: T0 + 7000, reason: null, disconnects: 1 });
    expect(reconnects).toBe(1);
    link.up(); // a duplicate connect event is not a second reconnect
    expect(reconnects).toBe(1);
  });

  it("ignores its own shutdown", () => {
    const { link } = linkAt();
    link.up();
    link.stop();
    link.down("client disconnecting");
    expect(link.state()).toMatchObject({ connected: true, disconnects: 0, outages: [] });
  });

  it("keeps a bounded list of outages", () => {
    const { clock, link } = linkAt();
    link.up();
    for (let i = 0; i < MAX_OUTAGES + 5; i++) {
      clock.advance(1);
      link.down();
      link.up();
    }
    expect(link.state().disconnects).toBe(MAX_OUTAGES + 5);
    expect(link.state().outages).toHaveLength(MAX_OUTAGES);
    expect(link.state().outages[0]).toBe(T0 + 6);
  });
});

describe("health and readiness decisions", () => {
  it("up: alive and ready, with when the link came up", () => {
    const { link } = linkAt();
    link.up();
    expect(livenessOf(link.state())).toEqual({
      statusCode: 200,
      body: { status: "ok", checks: { broker: { status: "up", kind: "external", since: iso(T0), disconnects: 0 } } },
    });
    expect(readinessOf(link.state())).toMatchObject({ statusCode: 200, body: { status: "ready" } });
  });

  it("down: liveness stays 200 but says degraded and why; readiness is 503", () => {
    const { clock, link } = linkAt();
    link.up();
    clock.advance(60_000);
    link.down("connect ECONNREFUSED 127.0.0.1:1883");
    const live = livenessOf(link.state());
    expect(live.statusCode).toBe(200);
    expect(live.body.status).toBe("degraded");
    expect(live.body.checks.broker).toMatchObject({ status: "down", since: iso(T0 + 60_000), disconnects: 1 });
    expect(live.body.checks.broker.reason).toContain(`since ${iso(T0 + 60_000)}`);
    expect(live.body.checks.broker.reason).toContain("ECONNREFUSED");
    const ready = readinessOf(link.state());
    expect(ready.statusCode).toBe(503);
    expect(ready.body).toEqual({ status: "not ready", checks: live.body.checks });
  });

  it("not yet connected is not ready either (never served: the API listens after the first connect)", () => {
    const { link } = linkAt();
    expect(readinessOf(link.state()).statusCode).toBe(503);
    expect(livenessOf(link.state()).body.checks.broker.reason).toContain("not connected yet");
  });
});

describe("presence against the broker link", () => {
  const ENROLLED = T0 - 60_000;
  const up = (outages: number[] = []) => ({ connected: true, outages });
  const down = (outages: number[]) => ({ connected: false, outages });

  it("no outage: the stored presence", () => {
    expect(presenceOf("online", undefined, ENROLLED, up())).toEqual({
      presence: "online",
      presenceSince: null,
      lastKnownPresence: "online",
    });
    expect(presenceOf("offline", T0, ENROLLED, up())).toMatchObject({ presence: "offline" });
  });

  it("an outage after the last message: unknown since the outage began, the last known value kept", () => {
    expect(presenceOf("online", T0, ENROLLED, down([T0 + 10]))).toEqual({
      presence: "unknown",
      presenceSince: iso(T0 + 10),
      lastKnownPresence: "online",
    });
    // The link is back but the device was not heard since: still unknown.
    expect(presenceOf("online", T0, ENROLLED, up([T0 + 10]))).toMatchObject({ presence: "unknown" });
  });

  it("heard again after the outage: known again", () => {
    expect(presenceOf("offline", T0 + 20, ENROLLED, up([T0 + 10]))).toMatchObject({
      presence: "offline",
      presenceSince: null,
    });
  });

  it("heard between two outages: unknown since the second", () => {
    expect(presenceOf("online", T0 + 20, ENROLLED, up([T0 + 10, T0 + 30, T0 + 50]))).toMatchObject({
      presence: "unknown",
      presenceSince: iso(T0 + 30),
    });
  });

  it("never heard by this process: unknown since the first outage after enrollment", () => {
    expect(presenceOf("online", undefined, ENROLLED, up([T0 + 10, T0 + 30]))).toMatchObject({
      presence: "unknown",
      presenceSince: iso(T0 + 10),
    });
    expect(presenceOf("offline", undefined, T0 + 20, up([T0 + 10, T0 + 30]))).toMatchObject({
      presence: "unknown",
      presenceSince: iso(T0 + 30),
    });
  });

  it("enrolled after the last outage and never heard: offline (the server would have seen it connect)", () => {
    expect(presenceOf("offline", undefined, T0 + 20, up([T0 + 10]))).toMatchObject({
      presence: "offline",
      presenceSince: null,
    });
  });

  it("enrolled while the link is down: unknown since its enrollment", () => {
    expect(presenceOf("offline", undefined, T0 + 20, down([T0 + 10]))).toMatchObject({
      presence: "unknown",
      presenceSince: iso(T0 + 20),
    });
  });

  it("the tracker: unknown while down and after the link returns, until the device is heard again", () => {
    const { clock, link } = linkAt();
    const tracker = createPresenceTracker({ clock, link });
    const dev = (id: string) => ({ id, presence: "online" as const, createdAt: iso(ENROLLED) });
    link.up();
    tracker.heard("d1");
    tracker.heard("d2");
    expect(tracker.view(dev("d1")).presence).toBe("online");
    clock.advance(1000);
    link.down();
    expect(tracker.view(dev("d1"))).toMatchObject({ presence: "unknown", presenceSince: iso(T0 + 1000) });
    clock.advance(1000);
    link.up();
    // Back, but nothing heard yet: the stored value may be stale (the device may have died meanwhile).
    expect(tracker.view(dev("d1")).presence).toBe("unknown");
    tracker.heard("d1"); // its retained presence is re-read after the re-subscribe
    expect(tracker.view(dev("d1"))).toMatchObject({ presence: "online", presenceSince: null });
    expect(tracker.view(dev("d2"))).toMatchObject({ presence: "unknown", presenceSince: iso(T0 + 1000) });
  });
});

describe("broker link metrics", () => {
  it("edgefleet_broker_connected follows the link; each loss counts once", async () => {
    const { clock, link } = linkAt();
    const metrics = createBrokerMetrics(link);
    link.up();
    const sample = async () => {
      const m = parsePrometheus(await metrics.text());
      return {
        connected: promValue(m, "edgefleet_broker_connected"),
        disconnects: promValue(m, "edgefleet_broker_disconnects_total"),
        changed: promValue(m, "edgefleet_broker_link_changed_timestamp_seconds"),
      };
    };
    expect(await sample()).toEqual({ connected: 1, disconnects: 0, changed: T0 / 1000 });
    clock.advance(2000);
    link.down();
    link.down("connect ECONNREFUSED");
    expect(await sample()).toEqual({ connected: 0, disconnects: 1, changed: (T0 + 2000) / 1000 });
    link.up();
    expect(await sample()).toMatchObject({ connected: 1, disconnects: 1 });
  });
});
