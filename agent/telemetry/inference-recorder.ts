import { AsyncLocalStorage } from "node:async_hooks";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { UnsequencedRecord } from "../../shared/schemas/telemetry.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { type RawTensor, rawToJson } from "../../shared/tensors.js";
import type { SocketApiRuntime } from "../api/socket-api.js";
import type { DriftMonitor } from "../drift/drift-monitor.js";
import type { InferRecord, InferRequest, InferResult } from "../runtime/model-runtime.js";
import type { RawInferRequest, RawInferResult } from "../runtime/runtime-types.js";
import type { TelemetryBuffer } from "./telemetry-buffer.js";

export interface RecorderDeps {
  buffer: TelemetryBuffer;
  drift: DriftMonitor;
  /** Every inference, with whether a local client asked for it (metrics count requests apart from warm-ups and probes). */
  onInference: (r: InferRecord, source: "api" | "internal") => void;
  /** Probability in [0, 1] that an API inference's tensors are captured in full. */
  captureRate: number;
  random: () => number;
}

export interface InferenceRecorder {
  /** For `runtime.observe`: every inference the runtime ran. */
  listener(r: InferRecord): void;
  /** The runtime as the socket API should see it: client requests are recorded with their outputs. */
  tap(runtime: SocketApiRuntime): SocketApiRuntime;
  /**
   * The typed-array path (binary tensor extension, dynamic batching, cache misses) recorded as client
   * requests too. Without output summaries or drift windows: those need JSON tensors, and converting a
   * large binary tensor would cost the caller what the binary path saves (docs/operations.md).
   */
  tapRaw(
    inferRaw: (req: RawInferRequest) => Promise<RawInferResult>,
  ): (req: RawInferRequest) => Promise<RawInferResult>;
  /**
   * Sequence and stream frames (issue 18: socket sequences, NDJSON streams, stream jobs) recorded as
   * client requests like `tapRaw`, and, like JSON requests, with an output summary and fed to the drift
   * windows: a frame is small (one audio or sensor frame), so its JSON copy costs little, and a
   * streaming model's drift is only ever seen through its frames.
   */
  tapFrames(
    inferRaw: (req: RawInferRequest) => Promise<RawInferResult>,
  ): (req: RawInferRequest) => Promise<RawInferResult>;
  recordEvent(e: DeviceEvent): void;
}

/** Context of one socket API request, carried across the runtime's awaits by AsyncLocalStorage. */
interface ApiContext {
  record?: InferRecord;
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

function summarize(outputs: Record<string, JsonTensor>) {
  const out: Record<string, { min: number; max: number; mean: number }> = {};
  for (const [name, t] of Object.entries(outputs)) {
    const xs = (t.data as unknown[]).map(Number).filter(Number.isFinite);
    if (xs.length === 0) continue;
    let min = xs[0]!;
    let max = xs[0]!;
    let sum = 0;
    for (const x of xs) {
      if (x < min) min = x;
      if (x > max) max = x;
      sum += x;
    }
    out[name] = { min: round(min), max: round(max), mean: round(sum / xs.length) };
  }
  return out;
}

function toRecord(r: InferRecord, source: "api" | "internal", outputs?: Record<string, JsonTensor>): UnsequencedRecord {
  return {
    kind: "inference",
    ts: r.at,
    model: r.installed.model,
    version: r.installed.version,
    variant: r.installed.variant,
    ok: r.ok,
    ...(r.errorCode ? { errorCode: r.errorCode } : {}),
    computeMs: r.computeMs === null ? null : round(r.computeMs),
    totalMs: round(r.totalMs),
    nonFinite: r.nonFinite,
    probe: r.probe,
    source,
    ...(outputs ? { outputs: summarize(outputs) } : {}),
  };
}

const tensorCopy = (ts: Record<string, JsonTensor>, budget: { left: number; truncated: boolean }) => {
  const out: Record<string, { shape: number[]; data: unknown[] }> = {};
  for (const [name, t] of Object.entries(ts)) {
    const keep = Math.max(0, Math.min(t.data.length, budget.left));
    if (keep < t.data.length) budget.truncated = true;
    budget.left -= keep;
    out[name] = { shape: t.shape, data: (t.data as unknown[]).slice(0, keep) };
  }
  return out;
};

/**
 * Turns runtime records into buffered telemetry. Client requests (through `tap`) are recorded
 * after the reply is known, with an output summary, feed the drift windows, and in `full`
 * durability the reply waits for the group commit: a client that got an answer knows its
 * inference is on disk. Everything else the runtime runs (warm-ups, smoke tests, probes) is
 * recorded as `source: internal` straight from the observer.
 */
export function createInferenceRecorder(deps: RecorderDeps): InferenceRecorder {
  const als = new AsyncLocalStorage<ApiContext>();
  const { buffer } = deps;

  return {
    listener(r) {
      const ctx = als.getStore();
      if (ctx && !r.probe && ctx.record === undefined) {
        deps.onInference(r, "api");
        ctx.record = r;
        return;
      }
      deps.onInference(r, "internal");
      buffer.append(toRecord(r, "internal"));
    },
    tap(runtime) {
      const infer = async (req: InferRequest): Promise<InferResult> => {
        const ctx: ApiContext = {};
        let res: InferResult;
        try {
          res = await als.run(ctx, () => runtime.infer(req));
        } catch (err) {
          if (ctx.record) {
            buffer.append(toRecord(ctx.record, "api"));
            await buffer.durable();
          }
          throw err;
        }
        if (ctx.record) {
          const installed = ctx.record.installed;
          deps.drift.observe(
            { model: installed.model, version: installed.version, dir: installed.dir },
            req.inputs,
            res.outputs,
          );
          buffer.append(toRecord(ctx.record, "api", res.outputs));
          if (deps.captureRate > 0 && deps.random() < deps.captureRate) {
            const budget = { left: 4096, truncated: false };
            buffer.append({
              kind: "capture",
              ts: ctx.record.at,
              model: installed.model,
              version: installed.version,
              inputs: tensorCopy(req.inputs, budget),
              outputs: tensorCopy(res.outputs, budget),
              truncated: budget.truncated,
            });
          }
          await buffer.durable();
        }
        return res;
      };
      return {
        serving: () => runtime.serving(),
        loaded: () => runtime.loaded(),
        stateOf: (v) => runtime.stateOf(v),
        infer,
      };
    },
    tapRaw(inferRaw) {
      return async (req) => {
        const ctx: ApiContext = {};
        try {
          return await als.run(ctx, () => inferRaw(req));
        } finally {
          if (ctx.record) {
            buffer.append(toRecord(ctx.record, "api"));
            await buffer.durable();
          }
        }
      };
    },
    tapFrames(inferRaw) {
      const json = (ts: Record<string, RawTensor>) =>
        Object.fromEntries(Object.entries(ts).map(([name, t]) => [name, rawToJson(t)]));
      return async (req) => {
        const ctx: ApiContext = {};
        let res: RawInferResult;
        try {
          res = await als.run(ctx, () => inferRaw(req));
        } catch (err) {
          if (ctx.record) {
            buffer.append(toRecord(ctx.record, "api"));
            await buffer.durable();
          }
          throw err;
        }
        if (ctx.record) {
          const { model, version, dir } = ctx.record.installed;
          const outputs = json(res.outputs);
          deps.drift.observe({ model, version, dir }, json(req.inputs), outputs);
          buffer.append(toRecord(ctx.record, "api", outputs));
          await buffer.durable();
        }
        return res;
      };
    },
    recordEvent(e) {
      buffer.append({ kind: "event", ts: Date.parse(e.ts) || 0, event: e });
    },
  };
}
