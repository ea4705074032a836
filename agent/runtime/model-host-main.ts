/**
 * Entry point of a model host process (one per loaded model version, architecture.md §5).
 * Forked by `spawnModelHost`; talks only over the IPC channel (see host-protocol.ts).
 * It owns exactly one onnxruntime session. `run()` may block this process's thread — that is
 * the point of running it here and not in the agent's main process.
 *
 * Invariant: requests are handled one at a time in arrival order (a promise chain), so a
 * `stop` never releases the session under a running `run`.
 */
import { Socket } from "node:net";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { OrtTensorType, RawTensor, TensorData } from "../../shared/tensors.js";
import { readVerified } from "../bundle/read-verified.js";
import { createPayloadPool, readFrames, writeFrame } from "./host-channel.js";
import { decodeTensors, encodeFrame, type Frame } from "./host-frames.js";
import { parseRunRequest } from "./host-headers.js";
import {
  type HostMetadata,
  type HostRequest,
  type HostResponse,
  type HostResult,
  monoMs,
  type ValueInfo,
} from "./host-protocol.js";
import { createHostSequences, type HostSequences } from "./host-sequences.js";
import { sidePayloadsIn } from "./host-side-payloads.js";
import type { HostSessionOptions } from "./session-options.js";

interface HostState {
  session: InferenceSession | null;
  /**
   * Process CPU (process.cpuUsage) when the last successful run replied, or the load ended: each
   * run's `cpuMs` is the CPU since then (issue 22, cost per prediction). See `cpuSince`.
   */
  cpuMark: NodeJS.CpuUsage;
  /** Live sequences' implicit state, when the manifest declares one (host-sequences.ts, issue 18). */
  sequences: HostSequences | null;
}

/**
 * CPU of this whole process since `mark`, in ms (user + system, every thread: onnxruntime's intra-op
 * pool included, which a per-thread clock would miss). Taken from one run's reply to the next rather than
 * around `session.run` alone, so what serving costs between runs is attributed too: the pool's
 * spin-wait after a run (by default ORT spins for a while: measured 1.18 ms of CPU per 0.02 ms run on a
 * 2-core VM, docs/benchmarks.md "shadow"), decoding frames, answering `rss`. Runs never overlap (one
 * request at a time, see the invariant above), so no CPU is counted twice; a failed run's CPU rolls
 * into the next successful one (the mark only moves on success).
 */
function cpuSince(mark: NodeJS.CpuUsage): { ms: number; now: NodeJS.CpuUsage } {
  const now = process.cpuUsage();
  return { ms: (now.user - mark.user + now.system - mark.system) / 1000, now };
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

/**
 * Outputs are written to the bulk channel straight from the tensors' memory, no copy: onnxruntime-node
 * gives every CPU output its own JS-owned ArrayBuffer (a later run never writes into an earlier result).
 */
function toRaw(t: Tensor): RawTensor {
  return { type: t.type as OrtTensorType, dims: [...t.dims], data: t.data as TensorData };
}

/**
 * One `run` frame (host-protocol.ts): feeds are typed views over the frame's payload, handed to
 * onnxruntime without a copy. `received`: when the frame was complete.
 */
async function run(state: HostState, frame: Frame, received: number): Promise<Buffer[]> {
  // A header without a usable id cannot be answered: the caller (main) treats that as fatal.
  const { id, outputs: wanted, tensors, seq } = parseRunRequest(frame.header);
  try {
    const session = state.session;
    if (!session) throw new EdgeFleetError("MODEL_NOT_READY", "model host has no session");
    let raws = decodeTensors(tensors, frame.payload);
    let fetches = wanted;
    if (seq) {
      if (!state.sequences) throw new EdgeFleetError("BAD_REQUEST", "this model declares no sequence state");
      raws = state.sequences.feeds(seq, raws);
      fetches = state.sequences.fetches(wanted);
    }
    const feeds: Record<string, Tensor> = {};
    for (const [name, raw] of Object.entries(raws)) {
      feeds[name] = new Tensor(raw.type, raw.data as Tensor.DataType, raw.dims);
    }
    let results: InferenceSession.ReturnType;
    const ortStart = monoMs();
    try {
      results = fetches ? await session.run(feeds, fetches) : await session.run(feeds);
    } catch (err) {
      throw toEdgeFleetError(err, "INFERENCE_FAILED");
    }
    const ortEnd = monoMs();
    let outputs: Record<string, RawTensor> = {};
    for (const [name, value] of Object.entries(results)) outputs[name] = toRaw(value as Tensor);
    if (seq && state.sequences) outputs = state.sequences.commit(seq, outputs, wanted);
    const cpu = cpuSince(state.cpuMark);
    state.cpuMark = cpu.now;
    const timing = { received, ortStart, ortEnd, replying: monoMs() };
    return encodeFrame({ id, ok: true, computeMs: ortEnd - ortStart, cpuMs: cpu.ms, timing }, outputs);
  } catch (err) {
    return encodeFrame({ id, ok: false, error: toEdgeFleetError(err).toJSON() });
  }
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
      state.sequences = req.sequence ? createHostSequences(req.sequence) : null;
      // Loading is not a prediction's cost: the first run counts from here.
      state.cpuMark = process.cpuUsage();
      const metadata: HostMetadata = {
        inputs: state.session.inputMetadata.map(valueInfo),
        outputs: state.session.outputMetadata.map(valueInfo),
      };
      return { type: "load", metadata };
    }
    case "rss":
      return { type: "rss", rss: process.memoryUsage.rss() };
    case "sequence-drop":
      return { type: "sequence-drop", dropped: state.sequences?.drop(req.ids) ?? 0 };
    case "sequence-export":
      return { type: "sequence-export", states: state.sequences?.export(req.ids) ?? {} };
    case "sequence-import": {
      if (!state.sequences) throw new EdgeFleetError("BAD_REQUEST", "this model declares no sequence state");
      return { type: "sequence-import", imported: state.sequences.import(req.states) };
    }
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
  const state: HostState = { session: null, cpuMark: process.cpuUsage(), sequences: null };
  let chain: Promise<void> = Promise.resolve();
  // The bulk channel (host-protocol.ts): run frames in on stdin, replies out on fd 4. Either failing
  // means the agent is gone or the stream is corrupt; nothing can be answered any more.
  const fatal = (why: string) => (err: unknown) => {
    process.stderr.write(`model host: ${why}: ${String(err)}\n`);
    process.exit(1);
  };
  const bulkOut = new Socket({ fd: 4, readable: false, writable: true });
  bulkOut.on("error", fatal("bulk channel write failed"));
  process.stdin.on("error", fatal("bulk channel read failed"));
  // Input payloads are recycled once their run is over (onnxruntime keeps no reference to feeds).
  const pool = createPayloadPool();
  // Set by the agent when the pair has a side-payload directory (host-side-payloads.ts).
  const sideDir = process.env.EDGEFLEET_HOST_SIDE_DIR;
  const side = sideDir ? sidePayloadsIn(sideDir, "h") : null;
  readFrames(
    process.stdin,
    (frame) => {
      const received = monoMs();
      chain = chain.then(async () => {
        try {
          writeFrame(bulkOut, await run(state, frame, received), side);
          pool.give(frame.payload);
        } catch (err) {
          fatal("bad run request")(err);
        }
      });
    },
    fatal("bad frame from the agent"),
    { allocate: pool.take, side },
  );
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
