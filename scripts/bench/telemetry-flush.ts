import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aedes } from "aedes";
import mqtt from "mqtt";
import { pino } from "pino";
import { createFlusher } from "../../agent/telemetry/flusher.js";
import { openTelemetryBuffer } from "../../agent/telemetry/telemetry-buffer.js";
import { connectTransport } from "../../fleet-server/broker/transport.js";
import { openDatabase } from "../../fleet-server/store/db.js";
import { DEFAULT_DRIFT_THRESHOLDS } from "../../fleet-server/telemetry/drift-alerts.js";
import { createTelemetryIngest } from "../../fleet-server/telemetry/telemetry-service.js";
import { systemClock } from "../../shared/clock.js";
import { TELEMETRY_MAX_BATCH_BYTES } from "../../shared/schemas/telemetry.js";
import { createTopics } from "../../shared/topics.js";
import { benchRecord } from "./telemetry-ingest.js";

/**
 * Scenario "telemetry-flush" (architecture.md §9): draining a backlog of `rows` buffered records, end to
 * end (read batch from the ring → QoS 1 publish → broker → the server's real ingest into SQLite
 * with de-dup → ack → delete from the ring), against the anchor: mqtt.js publishing the very same
 * batch payloads QoS 1 back-to-back to the same broker, received by a plain subscriber.
 */
export async function benchTelemetryFlush(rows = 50_000, window = 4): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), "ef-btf-"));
  const log = pino({ level: "silent" });
  const aedes = await Aedes.createBroker();
  const net = createServer(aedes.handle);
  await new Promise<void>((r) => net.listen(0, "127.0.0.1", r));
  const url = `mqtt://127.0.0.1:${(net.address() as { port: number }).port}`;
  const topics = createTopics();
  const deviceId = "bench-dev";
  const db = openDatabase(join(dir, "server"));
  const transport = await connectTransport({ url, clientId: "bench-server", log });
  const device = await mqtt.connectAsync(url, { clientId: deviceId, protocolVersion: 4, clean: true });
  try {
    const ingest = createTelemetryIngest({
      log,
      clock: systemClock,
      db,
      topics,
      transport,
      knownDevice: () => true,
      thresholds: DEFAULT_DRIFT_THRESHOLDS,
      retention: { maxRows: rows * 10, maxAgeMs: 86_400_000 },
    });
    await transport.subscribe(topics.allDevices("telemetry"), (topic, payload) => {
      const t = topics.parse(topic);
      if (t) ingest.onTelemetry(t.deviceId, payload);
    });
    const buffer = openTelemetryBuffer({
      path: join(dir, "telemetry.db"),
      durability: "full",
      caps: { maxRows: rows * 2, maxBytes: 1 << 30 },
      log,
    });
    for (let i = 0; i < rows; i++) buffer.append(benchRecord(i));
    buffer.commit();

    const payloads: Buffer[] = [];
    let done: () => void = () => undefined;
    const drained = new Promise<void>((r) => {
      done = r;
    });
    const flusher = createFlusher({
      log,
      clock: systemClock,
      deviceId,
      buffer,
      connected: () => true,
      publish: (p) => {
        payloads.push(p);
        device.publish(topics.device(deviceId, "telemetry"), p, { qos: 1 });
      },
      limits: { maxBytes: TELEMETRY_MAX_BATCH_BYTES, maxRecords: 5000 },
      window,
      ackTimeoutMs: 60_000,
    });
    device.on("message", (_t, p) => {
      flusher.onAck(p);
      if (buffer.stats().rows === 0) done();
    });
    await device.subscribeAsync(topics.device(deviceId, "telemetry/ack"), { qos: 1 });
    let t0 = performance.now();
    flusher.kick();
    await drained;
    const flushMs = performance.now() - t0;
    const bytes = payloads.reduce((a, p) => a + p.length, 0);

    // Anchor: the same bytes, raw QoS 1 publishes to a topic only a counting subscriber reads.
    const sink = await mqtt.connectAsync(url, { clientId: "bench-sink", protocolVersion: 4 });
    let received = 0;
    const all = new Promise<void>((r) => {
      sink.on("message", () => {
        received += 1;
        if (received === payloads.length) r();
      });
    });
    await sink.subscribeAsync("bench/raw", { qos: 1 });
    t0 = performance.now();
    for (const p of payloads) device.publish("bench/raw", p, { qos: 1 });
    await all;
    const rawMs = performance.now() - t0;
    await sink.endAsync();
    flusher.close();
    buffer.close();
    return {
      scenario: "telemetry-flush",
      rows,
      batches: payloads.length,
      bytes,
      window,
      flushRowsPerSec: Math.round(rows / (flushMs / 1000)),
      rawPublishRowsPerSec: Math.round(rows / (rawMs / 1000)),
      flushMiBPerSec: Math.round((bytes / 2 ** 20 / (flushMs / 1000)) * 10) / 10,
      ratio: Math.round((rawMs / flushMs) * 100) / 100,
    };
  } finally {
    await device.endAsync(true);
    await transport.close();
    db.close();
    await new Promise<void>((r) => aedes.close(() => r()));
    net.close();
    await rm(dir, { recursive: true, force: true });
  }
}
