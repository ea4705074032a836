import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFlusher } from "../../../agent/telemetry/flusher.js";
import { openTelemetryBuffer, type TelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import { systemClock } from "../../../shared/clock.js";
import {
  type TelemetryBatch,
  TelemetryBatchSchema,
  type UnsequencedRecord,
} from "../../../shared/schemas/telemetry.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

const log = pino({ level: "silent" });
const event = (i: number, pad = 0): UnsequencedRecord => ({
  kind: "inference",
  ts: i,
  model: "m",
  version: "1.0.0",
  variant: "fp32",
  ok: true,
  computeMs: 0.1,
  totalMs: 0.2,
  nonFinite: 0,
  probe: false,
  source: "api",
  ...(pad > 0 ? { errorCode: "x".repeat(Math.min(pad, 60)), outputs: { o: { min: 0, max: pad, mean: 1 } } } : {}),
});

describe("telemetry ring buffer on real SQLite (agent/telemetry)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let open: TelemetryBuffer[] = [];
  const openBuffer = (caps: { maxRows: number; maxBytes: number }, durability: "full" | "normal" = "full") => {
    const b = openTelemetryBuffer({ path: join(tmp.path, "telemetry.db"), durability, caps, log });
    open.push(b);
    return b;
  };

  beforeEach(async () => {
    tmp = await makeTempDir("ef-tbuf-");
  });
  afterEach(async () => {
    for (const b of open) b.close();
    open = [];
    await tmp.cleanup();
  });

  it("bound: a cap of X rows and 3X events offline leave X rows and a drop count of 2X, persisted", async () => {
    const X = 500;
    const b = openBuffer({ maxRows: X, maxBytes: 16 * 1024 * 1024 });
    for (let i = 0; i < 3 * X; i++) {
      b.append(event(i));
      if (i % 37 === 0) await b.durable(); // commits of varied sizes, like real traffic
    }
    await b.durable();
    expect(b.stats()).toMatchObject({ rows: X, dropped: 2 * X, pending: 0, lastSeq: 3 * X });
    // The oldest went: what is left is exactly the newest X.
    const rows = b.readAfter(0, 10 * X);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: X }, (_, i) => 2 * X + 1 + i));
    b.close();
    const again = openBuffer({ maxRows: X, maxBytes: 16 * 1024 * 1024 });
    expect(again.stats()).toMatchObject({ rows: X, dropped: 2 * X, lastSeq: 3 * X });
  });

  it("bound: when bytes bind, the SQLite files (database + WAL) stay within the byte cap", async () => {
    const maxBytes = 512 * 1024;
    const b = openBuffer({ maxRows: 1_000_000, maxBytes });
    let maxFile = 0;
    for (let i = 0; i < 12_000; i++) {
      b.append(event(i, 60));
      if (i % 50 === 0) {
        await b.durable();
        maxFile = Math.max(maxFile, b.stats().fileBytes);
      }
    }
    await b.durable();
    const s = b.stats();
    expect(s.dropped).toBeGreaterThan(0);
    expect(s.rows + s.dropped).toBe(12_000);
    expect(Math.max(maxFile, s.fileBytes)).toBeLessThanOrEqual(maxBytes);
  });

  it("sequence numbers survive emptying the table and a reopen: never reused", async () => {
    const b = openBuffer({ maxRows: 1000, maxBytes: 1 << 24 });
    for (let i = 0; i < 5; i++) b.append(event(i));
    await b.durable();
    expect(b.remove(1, 5, "acked")).toBe(5);
    b.close();
    const again = openBuffer({ maxRows: 1000, maxBytes: 1 << 24 });
    again.append(event(6));
    await again.durable();
    expect(again.readAfter(0, 10).map((r) => r.seq)).toEqual([6]);
  });

  it("normal durability: appends are committed on the interval, not per request", async () => {
    const b = openBuffer({ maxRows: 1000, maxBytes: 1 << 24 }, "normal");
    b.append(event(1));
    await b.durable(); // resolves at once in normal mode
    expect(b.stats().pending).toBe(1);
    b.commit();
    expect(b.stats()).toMatchObject({ pending: 0, rows: 1 });
  });

  it("flusher: at-least-once; rows leave only on ack; a dropped link re-sends; batches respect the caps", async () => {
    const b = openBuffer({ maxRows: 10_000, maxBytes: 1 << 24 });
    for (let i = 0; i < 250; i++) b.append(event(i));
    await b.durable();
    const sent: TelemetryBatch[] = [];
    let connected = true;
    const flusher = createFlusher({
      log,
      clock: systemClock,
      deviceId: "dev-1",
      buffer: b,
      connected: () => connected,
      publish: (p) => {
        expect(p.length).toBeLessThanOrEqual(8192);
        sent.push(TelemetryBatchSchema.parse(JSON.parse(p.toString())) as TelemetryBatch);
      },
      limits: { maxBytes: 8192, maxRecords: 40 },
      window: 2,
      ackTimeoutMs: 60_000,
    });
    const ack = (bt: TelemetryBatch) =>
      flusher.onAck(
        Buffer.from(
          JSON.stringify({
            v: 1,
            deviceId: "dev-1",
            firstSeq: bt.firstSeq,
            lastSeq: bt.lastSeq,
            status: "stored",
            stored: 1,
            duplicates: 0,
          }),
        ),
      );
    flusher.kick();
    expect(sent).toHaveLength(2); // the window
    expect(sent[1]!.firstSeq).toBe(sent[0]!.lastSeq + 1);
    ack(sent[0]!);
    expect(b.stats().rows).toBe(250 - sent[0]!.records.length);
    // Link drops with the second batch unacked: nothing is deleted, it is sent again later.
    connected = false;
    flusher.onDisconnect();
    const before = sent.length;
    flusher.kick();
    expect(sent).toHaveLength(before);
    connected = true;
    flusher.kick();
    expect(sent[before]!.firstSeq).toBe(sent[1]!.firstSeq);
    // Drain: ack everything that arrives until the buffer is empty.
    for (let i = before; i < sent.length; i++) {
      ack(sent[i]!);
      await new Promise((r) => setImmediate(r));
    }
    expect(b.stats().rows).toBe(0);
    const delivered = new Set(sent.flatMap((bt) => bt.records.map((r) => r.seq)));
    expect(delivered.size).toBe(250);
    // A forged ack for another device changes nothing.
    flusher.onAck(
      Buffer.from(
        JSON.stringify({
          v: 1,
          deviceId: "dev-2",
          firstSeq: 1,
          lastSeq: 9,
          status: "stored",
          stored: 0,
          duplicates: 0,
        }),
      ),
    );
    flusher.onAck(Buffer.from("not json"));
    flusher.close();
  });
});
