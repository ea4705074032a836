import { describe, expect, it } from "vitest";
import { createAgentMetrics } from "../../../agent/metrics/agent-metrics.js";
import { createStorageMonitor } from "../../../agent/store/storage-monitor.js";
import { openTelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import { createStorageRetry } from "../../../agent/updater/storage-retry.js";
import { createFakeClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { createLogger } from "../../../shared/logger.js";
import type { DeviceEvent } from "../../../shared/schemas/device-state.js";
import { parsePrometheus, promValue } from "../../helpers/prometheus.js";

/** Issue 20 §2: faults reported once per change, restored with backoff, updates retried; losses counted. */
const log = createLogger({ name: "test", level: "silent", pretty: false });
const full = () =>
  new EdgeFleetError("DISK_FULL", "full", { details: { path: "/data/agent.db", cause: "SQLITE_FULL", freeBytes: 0 } });

function setup() {
  const clock = createFakeClock(1_000_000);
  const events: DeviceEvent[] = [];
  let seq = 0;
  const monitor = createStorageMonitor({
    log,
    clock,
    deviceId: "dev-1",
    dataDir: "/nonexistent",
    publishEvent: (e) => events.push(e),
    nextEventSeq: () => ++seq,
    random: () => 0.999,
    backoff: { baseMs: 100, capMs: 400 },
  });
  return { clock, events, monitor };
}

describe("storage monitor", () => {
  it("publishes a storage.fault event when a fault appears and when it clears, not on repeats", () => {
    const { events, monitor } = setup();
    const changes: number[] = [];
    monitor.onChange(() => changes.push(monitor.faults().length));
    monitor.report("agent-db", full());
    monitor.report("agent-db", full());
    expect(monitor.snapshot().faults).toEqual([
      expect.objectContaining({
        area: "agent-db",
        path: "/data/agent.db",
        freeBytes: 0,
        error: expect.objectContaining({ code: "DISK_FULL" }),
      }),
    ]);
    monitor.report("agent-db", null);
    expect(events.map((e) => (e.type === "storage.fault" ? [e.area, e.fault?.error.code ?? null] : null))).toEqual([
      ["agent-db", "DISK_FULL"],
      ["agent-db", null],
    ]);
    expect(changes).toEqual([1, 0]);
    monitor.close();
  });

  it("tries the restorer with growing full-jitter delays until it works, then tells the listeners", () => {
    const { clock, monitor } = setup();
    const recovered: string[] = [];
    monitor.onRecovered((a) => recovered.push(a));
    let tries = 0;
    let diskBack = false;
    monitor.addRestorer("telemetry-db", () => {
      tries++;
      return diskBack;
    });
    monitor.report("telemetry-db", full());
    // Delays are floor(random × min(cap, base × 2^attempt)): 99, 199, 399 ms with random 0.999.
    clock.advance(98);
    expect(tries).toBe(0);
    clock.advance(1);
    expect(tries).toBe(1);
    clock.advance(199);
    expect(tries).toBe(2);
    diskBack = true;
    clock.advance(399);
    expect(tries).toBe(3);
    expect(recovered).toEqual(["telemetry-db"]);
    expect(monitor.faults()).toEqual([]);
    clock.advance(10_000);
    expect(tries).toBe(3); // nothing faulted: no more timers
    monitor.close();
  });

  it("an update stopped by the disk is retried with backoff and the fault clears once nothing waits for the disk", () => {
    const { clock, monitor } = setup();
    const reconciles: string[] = [];
    const retry = createStorageRetry({
      log,
      clock,
      storage: monitor,
      backoff: { baseMs: 100, capMs: 400 },
      random: () => 0.5,
      reconcile: (why) => reconciles.push(why),
      dataDir: "/",
    });
    const other = new EdgeFleetError("SMOKE_TEST_FAILED", "bad");
    expect(retry.failed(other)).toBe(other); // not the disk: unchanged, not retried
    const noRoom = new EdgeFleetError("DISK_FULL", "full", {
      details: { path: "/nonexistent/x.part", cause: "ENOSPC" },
    });
    const e = retry.failed(noRoom);
    expect(e.details).toMatchObject({ path: "/nonexistent/x.part", cause: "ENOSPC", freeBytes: expect.any(Number) });
    retry.failed(noRoom); // one timer at a time
    expect(monitor.faults().map((f) => f.area)).toEqual(["updates"]);
    clock.advance(50);
    expect(reconciles).toEqual(["reconcile after a storage fault"]);
    retry.settle([{ state: "failed", error: { code: "DISK_FULL" } }]);
    expect(monitor.faults()).toHaveLength(1); // still waiting for the disk
    retry.settle([
      { state: "committed", error: null },
      { state: "failed", error: { code: "SMOKE_TEST_FAILED" } },
    ]);
    expect(monitor.faults()).toEqual([]);
    retry.close();
    monitor.close();
  });
});

describe("telemetry losses are counted by reason (edgefleet_telemetry_dropped_total)", () => {
  it("ring evictions and oversize records reach the counter and the monitor", async () => {
    const { monitor } = setup();
    let metrics: ReturnType<typeof createAgentMetrics> | null = null;
    const buffer = openTelemetryBuffer({
      path: ":memory:",
      durability: "normal",
      caps: { maxRows: 10, maxBytes: 1024 * 1024 },
      log,
      onDropped: (reason, n) => {
        metrics?.dropped(reason, n);
        monitor.telemetryDropped(reason, n);
      },
    });
    metrics = createAgentMetrics({ buffer, drift: { gauges: () => [] } });
    const job = (i: number) =>
      ({
        kind: "job",
        ts: i,
        job: "j",
        runId: "r",
        phase: "progress",
        model: "m",
        version: null,
        total: 1,
        done: 0,
        failed: 0,
      }) as const;
    for (let i = 0; i < 25; i++) buffer.append(job(i));
    buffer.append({ ...job(99), job: "x".repeat(70_000) });
    buffer.commit();
    const families = parsePrometheus(await metrics.text());
    expect(promValue(families, "edgefleet_telemetry_dropped_total", { reason: "ring_full" })).toBe(15);
    expect(promValue(families, "edgefleet_telemetry_dropped_total", { reason: "oversize" })).toBe(1);
    expect(monitor.snapshot().telemetryDropped).toEqual({ ring_full: 15, oversize: 1 });
    expect(buffer.stats().dropped).toBe(16);
    buffer.close();
    monitor.close();
  });
});
