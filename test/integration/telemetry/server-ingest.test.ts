import type { MqttClient } from "mqtt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { TELEMETRY_MAX_BATCH_BYTES, type TelemetryAck } from "../../../shared/schemas/telemetry.js";
import { createTopics } from "../../../shared/topics.js";
import { parsePrometheus, promValue } from "../../helpers/prometheus.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import { connectDevice, eventually, publish } from "../fleet-server/device-client.js";

const topics = createTopics();

const inference = (seq: number) => ({
  seq,
  ts: 1_700_000_000_000 + seq,
  kind: "inference",
  model: "m",
  version: "1.0.0",
  variant: "fp32",
  ok: seq % 10 !== 0,
  computeMs: 0.1,
  totalMs: 0.5 + seq / 100,
  nonFinite: 0,
  probe: false,
  source: "api",
});
const batch = (deviceId: string, first: number, last: number, over: Record<string, unknown> = {}) => ({
  v: 1,
  deviceId,
  firstSeq: first,
  lastSeq: last,
  sentAt: 0,
  dropped: 0,
  records: Array.from({ length: last - first + 1 }, (_, i) => inference(first + i)),
  ...over,
});

/**
 * The fleet server's telemetry ingest against bare MQTT clients acting as devices: de-duplication
 * by (device, seq), acks, and rejection of bad telemetry without affecting other devices.
 */
describe("telemetry ingest on a real fleet server (fleet-server/telemetry)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: FleetServer;
  const clients: MqttClient[] = [];
  const acks = new Map<string, TelemetryAck[]>();

  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${server.httpUrl}${path}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  };
  const stats = (id: string) =>
    get<{
      total: number;
      stats: {
        stored: number;
        duplicates: number;
        rejected: number;
        lastRejection: string | null;
        deviceDropped: number;
      };
    }>(`/v1/devices/${id}/telemetry?limit=1`);
  const device = async (id: string) => {
    const res = await fetch(`${server.httpUrl}/v1/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ id }),
    });
    const { password } = (await res.json()) as { password: string };
    const c = await connectDevice(server.mqttUrl, id, password);
    clients.push(c);
    acks.set(id, []);
    c.on("message", (_t, p) => acks.get(id)!.push(JSON.parse(p.toString()) as TelemetryAck));
    await new Promise<void>((resolve, reject) =>
      c.subscribe(topics.device(id, "telemetry/ack"), { qos: 1 }, (err) => (err ? reject(err) : resolve())),
    );
    return c;
  };
  const send = (c: MqttClient, id: string, payload: unknown) =>
    publish(c, topics.device(id, "telemetry"), typeof payload === "string" ? payload : JSON.stringify(payload));

  beforeAll(async () => {
    tmp = await makeTempDir("ef-ting-");
    server = await startFleetServer({ dataDir: tmp.path, httpPort: 0, mqttPort: 0, log: pino({ level: "silent" }) });
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await server?.close();
    await tmp?.cleanup();
  });

  it("stores a batch once, acks it, and a re-sent or overlapping batch stores zero duplicates", async () => {
    const c = await device("good-1");
    await send(c, "good-1", batch("good-1", 1, 50));
    await eventually(async () => (acks.get("good-1")!.length === 1 ? true : undefined));
    expect(acks.get("good-1")![0]).toMatchObject({
      firstSeq: 1,
      lastSeq: 50,
      status: "stored",
      stored: 50,
      duplicates: 0,
    });
    await send(c, "good-1", batch("good-1", 1, 50)); // lost ack → the device re-sends
    await send(c, "good-1", batch("good-1", 41, 80, { dropped: 3 })); // overlaps the tail
    await eventually(async () => (acks.get("good-1")!.length === 3 ? true : undefined));
    expect(acks.get("good-1")!.map((a) => [a.stored, a.duplicates])).toEqual([
      [50, 0],
      [0, 50],
      [30, 10],
    ]);
    const s = await stats("good-1");
    expect(s.total).toBe(80);
    expect(s.stats).toMatchObject({ stored: 80, duplicates: 60, rejected: 0, deviceDropped: 3 });
    const health = await get<{ total: { requests: number; failures: number } }>("/v1/models/m/versions/1.0.0/health");
    expect(health.total).toMatchObject({ requests: 80, failures: 8 });
  });

  it("rejects malformed, mismatched, oversized and backwards batches, counts them, and other devices carry on", async () => {
    const bad = await device("bad-1");
    const good = await device("good-2");
    const cases: [string, unknown][] = [
      ["malformed-json", "{not json"],
      ["malformed-schema", { ...batch("bad-1", 1, 2), v: 9 }],
      [
        "malformed-record",
        batch("bad-1", 1, 2, { records: [inference(1), { seq: 2, kind: "inference", model: "M!" }] }),
      ],
      ["device-mismatch", batch("good-2", 1, 2)],
      ["oversized", batch("bad-1", 1, 2, { pad: "x".repeat(TELEMETRY_MAX_BATCH_BYTES) })],
      ["seq-backwards", batch("bad-1", 1, 3, { records: [inference(3), inference(2), inference(1)] })],
    ];
    for (const [, payload] of cases) {
      await send(bad, "bad-1", payload);
      await send(good, "good-2", batch("good-2", 1, 10)); // interleaved good traffic (re-sends: de-duplicated)
    }
    const s = await eventually(async () => {
      const r = await stats("bad-1");
      return r.stats.rejected === cases.length ? r : undefined;
    });
    expect(s.total).toBe(0);
    // The impostor batch named good-2: nothing was stored for good-2 from it, nor acked to anyone for it.
    const g = await eventually(async () => {
      const r = await stats("good-2");
      return r.stats.stored + r.stats.duplicates === 10 * cases.length ? r : undefined;
    });
    expect(g.total).toBe(10);
    expect(g.stats.rejected).toBe(0);
    // Rejections with a readable range are acked as rejected so the device can drop the rows. The
    // acks travel the broker after the store counted them: wait for them rather than race them.
    const rejectedAcks = await eventually(async () => {
      const r = acks.get("bad-1")!.filter((a) => a.status === "rejected");
      return r.length >= 2 ? r : undefined;
    });
    expect(rejectedAcks.map((a) => a.error?.code).sort()).toEqual(["TELEMETRY_MALFORMED", "TELEMETRY_SEQ_BACKWARDS"]);

    const res = await fetch(`${server.httpUrl}/metrics`);
    const prom = parsePrometheus(await res.text());
    expect(promValue(prom, "edgefleet_telemetry_batches_rejected_total", { reason: "malformed" })).toBe(3);
    expect(promValue(prom, "edgefleet_telemetry_batches_rejected_total", { reason: "device_mismatch" })).toBe(1);
    expect(promValue(prom, "edgefleet_telemetry_batches_rejected_total", { reason: "too_large" })).toBe(1);
    expect(promValue(prom, "edgefleet_telemetry_batches_rejected_total", { reason: "seq_backwards" })).toBe(1);
    expect(promValue(prom, "edgefleet_telemetry_records_total", { result: "duplicate" })).toBeGreaterThanOrEqual(50);
  });

  it("API: unknown device is 404, bad query is 400", async () => {
    const res = await fetch(`${server.httpUrl}/v1/devices/nobody/telemetry`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(res.status).toBe(404);
    const bad = await fetch(`${server.httpUrl}/v1/devices/good-1/telemetry?limit=0`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(bad.status).toBe(400);
  });
});
