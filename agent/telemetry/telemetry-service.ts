import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Clock } from "../../shared/clock.js";
import type { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { JobTelemetry } from "../../shared/schemas/telemetry.js";
import type { SocketApiRuntime } from "../api/socket-api.js";
import { createDriftMonitor, type DriftMonitor } from "../drift/drift-monitor.js";
import { type AgentMetrics, createAgentMetrics } from "../metrics/agent-metrics.js";
import type { InferRecord } from "../runtime/model-runtime.js";
import type { RawInferRequest, RawInferResult } from "../runtime/runtime-types.js";
import type { DbMode } from "../store/fallback-db.js";
import { scheduleFlush } from "./flush-schedule.js";
import { createFlusher, type Flusher } from "./flusher.js";
import { createInferenceRecorder } from "./inference-recorder.js";
import { type BufferStats, openTelemetryBuffer, type TelemetryBuffer } from "./telemetry-buffer.js";
import type { TelemetryConfig } from "./telemetry-config.js";

export interface TelemetryServiceDeps {
  log: Logger;
  clock: Clock;
  dataDir: string;
  deviceId: string;
  profile: DeviceProfile;
  config: TelemetryConfig;
  /** Whether the MQTT link is up. */
  connected: () => boolean;
  /** Publishes a batch QoS 1 on `telemetry`. */
  publish: (payload: Buffer) => void;
  random?: () => number;
  /** Storage faults of the ring and what they cost (issue 20 §2): for `reported.storage` and events. */
  storage?: {
    dropped(reason: string, records: number): void;
    volatile(records: number): void;
    modeChange(mode: DbMode, fault: EdgeFleetError | null): void;
  };
}

export interface TelemetryService {
  buffer: TelemetryBuffer;
  drift: DriftMonitor;
  metrics: AgentMetrics;
  /** For `runtime.observe`. */
  onInference(r: InferRecord): void;
  /** Wraps the runtime the socket API uses so client requests are recorded with outputs and drift. */
  tap(runtime: SocketApiRuntime): SocketApiRuntime;
  /** See InferenceRecorder.tapRaw: binary / batched client requests recorded as such. */
  tapRaw(
    inferRaw: (req: RawInferRequest) => Promise<RawInferResult>,
  ): (req: RawInferRequest) => Promise<RawInferResult>;
  /** See InferenceRecorder.tapFrames: sequence/stream frames, recorded with outputs and drift. */
  tapFrames: TelemetryService["tapRaw"];
  recordEvent(e: DeviceEvent): void;
  /** A batch job's progress (agent/jobs): start/resume, every 10 %, end. */
  recordJobProgress(r: Omit<JobTelemetry, "seq" | "kind" | "ts">): void;
  onAck(payload: Buffer): void;
  onConnection(state: string): void;
  /** Snapshots drift windows into the buffer, commits, and starts draining. */
  flush(): { stats: BufferStats; inFlight: number };
  /** Adds `POST /v1/telemetry/flush` and `GET /v1/telemetry` to the socket API (before it listens). */
  registerRoutes(server: FastifyInstance): void;
  close(): Promise<void>;
}

/** Builds the agent's telemetry pipeline: ring buffer → flusher, recorder, drift, metrics, schedule. */
export function createTelemetryService(deps: TelemetryServiceDeps): TelemetryService {
  const { config, log, profile } = deps;
  const caps = {
    maxRows: Math.min(profile.buffers.telemetryMaxRows, config.maxRows ?? Number.POSITIVE_INFINITY),
    maxBytes: Math.min(profile.buffers.telemetryMaxBytes, config.maxBytes ?? Number.POSITIVE_INFINITY),
  };
  const buffer = openTelemetryBuffer({
    path: join(deps.dataDir, "telemetry.db"),
    durability: config.durability,
    caps,
    log: log.child({ c: "telemetry-buffer" }),
    commitIntervalMs: config.commitIntervalMs,
    // Inference goes on whatever the disk does; every record lost is counted (issue 20 §2).
    onDropped: (reason, n) => {
      metrics.dropped(reason, n);
      deps.storage?.dropped(reason, n);
    },
    onVolatile: (n) => {
      metrics.volatile(n);
      deps.storage?.volatile(n);
    },
    onModeChange: (mode, fault) => deps.storage?.modeChange(mode, fault),
  });
  const drift = createDriftMonitor({
    log: log.child({ c: "drift" }),
    now: deps.clock.now,
    window: config.drift.window,
    minSamples: config.drift.minSamples,
  });
  const metrics = createAgentMetrics({ buffer, drift });
  const flusher: Flusher = createFlusher({
    log: log.child({ c: "telemetry-flush" }),
    clock: deps.clock,
    deviceId: deps.deviceId,
    buffer,
    connected: deps.connected,
    publish: deps.publish,
    limits: { maxBytes: config.batchMaxBytes, maxRecords: config.batchMaxRecords },
    window: config.window,
    ackTimeoutMs: config.ackTimeoutMs,
    onBatchSent: (n, b) => metrics.batchSent(n, b),
    onAck: (n, s) => metrics.acked(n, s),
    onBadAck: () => metrics.badAck(),
  });
  const recorder = createInferenceRecorder({
    buffer,
    drift,
    onInference: (r, source) => metrics.recordInference(r, source),
    captureRate: config.captureRate,
    random: deps.random ?? Math.random,
  });

  const flush = () => {
    for (const r of drift.snapshot()) buffer.append(r);
    buffer.commit();
    flusher.kick();
    return { stats: buffer.stats(), inFlight: flusher.inFlight() };
  };
  // Never overlapping: a slow flush (a big backlog read) never stacks a second one on top.
  const task = scheduleFlush(config.flushCron, () => void flush(), {
    name: `telemetry-${deps.deviceId}`,
    onError: (err) => log.warn({ err }, "scheduled telemetry flush failed"),
  });
  log.info({ caps, durability: config.durability, flushCron: config.flushCron }, "telemetry buffer open");

  return {
    buffer,
    drift,
    metrics,
    onInference: (r) => recorder.listener(r),
    tap: (runtime) => recorder.tap(runtime),
    tapRaw: (inferRaw) => recorder.tapRaw(inferRaw),
    tapFrames: (inferRaw) => recorder.tapFrames(inferRaw),
    recordEvent: (e) => recorder.recordEvent(e),
    recordJobProgress: (r) => buffer.append({ kind: "job", ts: deps.clock.now(), ...r }),
    onAck: (payload) => flusher.onAck(payload),
    onConnection(state) {
      if (state === "connected") flush();
      else flusher.onDisconnect();
    },
    flush,
    registerRoutes(server) {
      server.post("/v1/telemetry/flush", async () => flush());
      server.get("/v1/telemetry", async () => ({
        caps,
        durability: config.durability,
        ...buffer.stats(),
        inFlight: flusher.inFlight(),
      }));
    },
    async close() {
      await task.destroy();
      flusher.close();
      buffer.close();
    },
  };
}
