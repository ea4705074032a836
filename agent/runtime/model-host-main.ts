/**
 * Entry point of a model host process (one per loaded model version, DESIGN §5).
 * Forked by `spawnModelHost`; talks only over the IPC channel (see host-protocol.ts).
 * It owns exactly one onnxruntime session. `run()` may block this process's thread — that is
 * the point of running it here and not in the agent's main process.
 *
 * Invariant: requests are handled one at a time in arrival order (a promise chain), so a
 * `stop` never releases the session under a running `run`.
 */
import { InferenceSession, Tensor } from "onnxruntime-node";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { OrtTensorType, RawTensor, TensorData } from "../../shared/tensors.js";
import { readVerified } from "../bundle/read-verified.js";
import {
  type HostMetadata,
  type HostRequest,
  type HostResponse,
  type HostResult,
  monoMs,
  type ValueInfo,
} from "./host-protocol.js";
import type { HostSessionOptions } from "./session-options.js";

interface HostState {
  session: InferenceSession | null;
}

function send(msg: HostResponse): void {
  // If the parent is gone there is nobody to answer; the disconnect handler exits.
  if (process.connected) process.send?.(msg);
}

function valueInfo(meta: InferenceSession.ValueMetadata): ValueInfo {
  if (!meta.isTensor) return { name: meta.name, type: null, shape: [] };
  return { name: meta.name, type: meta.type as OrtTensorType, shape: [...meta.shape] };
}

function toOrtOptions(o: HostSessionOptions): InferenceSession.SessionOptions {
  const opts: InferenceSession.SessionOptions = {
    executionMode: o.executionMode,
    graphOptimizationLevel: o.graphOptimizationLevel,
    enableCpuMemArena: o.enableCpuMemArena,
    enableMemPattern: o.enableMemPattern,
    executionProviders: o.executionProviders,
    extra: o.extra,
  };
  if (o.intraOpNumThreads !== undefined) opts.intraOpNumThreads = o.intraOpNumThreads;
  if (o.interOpNumThreads !== undefined) opts.interOpNumThreads = o.interOpNumThreads;
  return opts;
}

/** Copies output data out of ORT-owned memory so the structured clone sends only this tensor's bytes. */
function toRaw(t: Tensor): RawTensor {
  const data = t.data as TensorData;
  const copy = Array.isArray(data) ? [...data] : (data.slice() as TensorData);
  return { type: t.type as OrtTensorType, dims: [...t.dims], data: copy };
}

/**
 * The session is created from the verified buffer, never from the path, which closes the window
 * between the agent's verification and onnxruntime opening the file (agent/bundle/read-verified.ts).
 */
const toBytes = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

async function handle(state: HostState, req: HostRequest): Promise<HostResult> {
  switch (req.type) {
    case "load": {
      if (state.session) throw new EdgeFleetError("CONFLICT", "model host already has a session");
      const source =
        req.modelSha256 === undefined ? req.modelPath : toBytes(await readVerified(req.modelPath, req.modelSha256));
      try {
        state.session =
          typeof source === "string"
            ? await InferenceSession.create(source, toOrtOptions(req.options))
            : await InferenceSession.create(source, toOrtOptions(req.options));
      } catch (err) {
        throw toEdgeFleetError(err, "MODEL_LOAD_FAILED");
      }
      const metadata: HostMetadata = {
        inputs: state.session.inputMetadata.map(valueInfo),
        outputs: state.session.outputMetadata.map(valueInfo),
      };
      return { type: "load", metadata };
    }
    case "run": {
      const received = monoMs();
      const session = state.session;
      if (!session) throw new EdgeFleetError("MODEL_NOT_READY", "model host has no session");
      const feeds: Record<string, Tensor> = {};
      for (const [name, raw] of Object.entries(req.feeds)) {
        feeds[name] = new Tensor(raw.type, raw.data as Tensor.DataType, raw.dims);
      }
      let results: InferenceSession.ReturnType;
      const ortStart = monoMs();
      try {
        results = req.outputs ? await session.run(feeds, req.outputs) : await session.run(feeds);
      } catch (err) {
        throw toEdgeFleetError(err, "INFERENCE_FAILED");
      }
      const ortEnd = monoMs();
      const outputs: Record<string, RawTensor> = {};
      for (const [name, value] of Object.entries(results)) outputs[name] = toRaw(value as Tensor);
      const timing = { received, ortStart, ortEnd, replying: monoMs() };
      return { type: "run", outputs, computeMs: ortEnd - ortStart, timing };
    }
    case "rss":
      return { type: "rss", rss: process.memoryUsage.rss() };
    case "stop":
      await state.session?.release();
      state.session = null;
      return { type: "stop" };
  }
}

function main(): void {
  if (!process.send) {
    process.stderr.write("model-host-main must be started with an IPC channel (child_process.fork)\n");
    process.exit(2);
  }
  const state: HostState = { session: null };
  let chain: Promise<void> = Promise.resolve();
  process.on("message", (msg: HostRequest) => {
    chain = chain.then(async () => {
      try {
        const result = await handle(state, msg);
        send({ id: msg.id, ok: true, result });
        if (result.type === "stop") process.disconnect();
      } catch (err) {
        send({ id: msg.id, ok: false, error: toEdgeFleetError(err).toJSON() });
      }
    });
  });
  // The parent died or stopped us: nothing else will ever arrive.
  process.on("disconnect", () => process.exit(0));
}

main();
