import { describe, expect, it } from "vitest";
import { ENVELOPE_BYTES, maySend, rowsForBatch } from "../../../agent/telemetry/batch-plan.js";
import { overCaps, payloadBudget, rowsToEvict } from "../../../agent/telemetry/ring-accounting.js";
import { checkBatch } from "../../../fleet-server/telemetry/ingest-check.js";
import { percentile, versionHealth } from "../../../fleet-server/telemetry/version-health.js";
import { TELEMETRY_MAX_BATCH_BYTES } from "../../../shared/schemas/telemetry.js";

describe("ring accounting (agent/telemetry)", () => {
  const caps = { maxRows: 100, maxBytes: 1_000_000 };

  it("evicts exactly the row overflow when rows bind", () => {
    expect(rowsToEvict({ rows: 130, bytes: 1000 }, caps, new Array(64).fill(10))).toBe(30);
    expect(rowsToEvict({ rows: 100, bytes: 1000 }, caps, new Array(64).fill(10))).toBe(0);
  });

  it("evicts oldest rows until the payload budget holds when bytes bind", () => {
    const budget = payloadBudget(caps.maxBytes);
    // 10 rows, the oldest three are big.
    const costs = [budget / 2, budget / 4, 1000, 10, 10, 10, 10, 10, 10, 10];
    const bytes = costs.reduce((a, b) => a + b, 0);
    const n = rowsToEvict({ rows: 10, bytes: bytes + budget * 0.8 }, caps, costs);
    expect(n).toBe(2);
    expect(overCaps({ rows: 8, bytes: bytes + budget * 0.8 - costs[0]! - costs[1]! }, caps)).toBe(false);
    expect(overCaps({ rows: 9, bytes: bytes + budget * 0.8 - costs[0]! }, caps)).toBe(true);
  });

  it("stops when it runs out of known rows (the caller asks again)", () => {
    expect(rowsToEvict({ rows: 500, bytes: 0 }, caps, [1, 1, 1])).toBe(3);
  });
});

describe("batch planning (agent/telemetry)", () => {
  it("fills a batch up to the byte cap including the envelope", () => {
    const limits = { maxBytes: ENVELOPE_BYTES + 3 * 101, maxRecords: 100 };
    expect(rowsForBatch([100, 100, 100, 100], limits)).toEqual({ take: 3, oversizedFirst: false });
  });

  it("respects the record cap and flags a row that can never fit", () => {
    expect(rowsForBatch([1, 1, 1], { maxBytes: 10_000, maxRecords: 2 }).take).toBe(2);
    expect(rowsForBatch([TELEMETRY_MAX_BATCH_BYTES], { maxBytes: TELEMETRY_MAX_BATCH_BYTES, maxRecords: 10 })).toEqual({
      take: 0,
      oversizedFirst: true,
    });
  });

  it("sends only while connected and the ack window has room", () => {
    expect(maySend({ connected: true, inFlight: 3, window: 4, pendingRows: 1 })).toBe(true);
    expect(maySend({ connected: true, inFlight: 4, window: 4, pendingRows: 1 })).toBe(false);
    expect(maySend({ connected: false, inFlight: 0, window: 4, pendingRows: 1 })).toBe(false);
    expect(maySend({ connected: true, inFlight: 0, window: 4, pendingRows: 0 })).toBe(false);
  });
});

const inference = (seq: number) => ({
  seq,
  ts: 1,
  kind: "inference",
  model: "m",
  version: "1.0.0",
  variant: "fp32",
  ok: true,
  computeMs: 0.1,
  totalMs: 0.5,
  nonFinite: 0,
  probe: false,
  source: "api",
});
const batch = (over: Record<string, unknown> = {}) => ({
  v: 1,
  deviceId: "dev-1",
  firstSeq: 1,
  lastSeq: 3,
  sentAt: 0,
  dropped: 0,
  records: [inference(1), inference(2), inference(3)],
  ...over,
});
const buf = (o: unknown) => Buffer.from(JSON.stringify(o));

describe("ingest checks (fleet-server/telemetry)", () => {
  it("accepts a well-formed batch with gaps (rows the ring dropped)", () => {
    const r = checkBatch("dev-1", buf(batch({ lastSeq: 9, records: [inference(1), inference(5), inference(9)] })));
    expect(r.ok).toBe(true);
  });

  it("rejects each kind of bad batch with its own code", () => {
    const cases: [string, Buffer, string][] = [
      ["not JSON", Buffer.from("{nope"), "TELEMETRY_MALFORMED"],
      ["schema", buf({ ...batch(), v: 2 }), "TELEMETRY_MALFORMED"],
      ["bad record", buf(batch({ records: [inference(1), { seq: 2, kind: "inference" }] })), "TELEMETRY_MALFORMED"],
      ["device mismatch", buf(batch({ deviceId: "dev-2" })), "TELEMETRY_DEVICE_MISMATCH"],
      ["oversized", Buffer.alloc(TELEMETRY_MAX_BATCH_BYTES + 1, 32), "TELEMETRY_TOO_LARGE"],
      [
        "records backwards",
        buf(batch({ records: [inference(2), inference(1), inference(3)] })),
        "TELEMETRY_SEQ_BACKWARDS",
      ],
      ["repeated seq", buf(batch({ records: [inference(1), inference(1), inference(3)] })), "TELEMETRY_SEQ_BACKWARDS"],
      ["range inverted", buf(batch({ firstSeq: 3, lastSeq: 1 })), "TELEMETRY_SEQ_BACKWARDS"],
      ["outside range", buf(batch({ lastSeq: 2 })), "TELEMETRY_SEQ_BACKWARDS"],
    ];
    for (const [what, payload, code] of cases) {
      const r = checkBatch("dev-1", payload);
      expect(r.ok, what).toBe(false);
      if (!r.ok) expect(r.code, what).toBe(code);
    }
  });

  it("gives no range for a device mismatch (the ack must not reach the wrong device's rows)", () => {
    const r = checkBatch("dev-1", buf(batch({ deviceId: "dev-2" })));
    expect(r.ok === false && r.range).toBeNull();
  });
});

describe("version health aggregation", () => {
  it("nearest-rank percentiles", () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect([percentile(xs, 50), percentile(xs, 95), percentile(xs, 99), percentile([], 50)]).toEqual([
      50,
      95,
      99,
      null,
    ]);
  });

  it("aggregates per cohort and in total; failures count in error rate, not latency", () => {
    const rows = [
      { cohort: "stage-0", deviceId: "a", ok: 1, latencyMs: 1, nonFinite: 0 },
      { cohort: "stage-0", deviceId: "a", ok: 0, latencyMs: 100, nonFinite: 0 },
      { cohort: "stage-1", deviceId: "b", ok: 1, latencyMs: 3, nonFinite: 2 },
      { cohort: "all", deviceId: "c", ok: 1, latencyMs: 5, nonFinite: 0 },
    ];
    const h = versionHealth(rows);
    expect(h.total).toMatchObject({
      devices: 3,
      requests: 4,
      failures: 1,
      errorRate: 0.25,
      nonFiniteOutputs: 2,
      p50Ms: 3,
    });
    expect(h.cohorts.map((c) => [c.cohort, c.requests, c.p95Ms])).toEqual([
      ["all", 1, 5],
      ["stage-0", 2, 1],
      ["stage-1", 1, 3],
    ]);
  });
});
