import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";
import { pino } from "pino";
import { createSocketApi, type SocketApi } from "../../agent/api/socket-api.js";
import type { InferStages } from "../../agent/api/v2-routes.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { loadProfileFile } from "../../agent/profile/load-profiles.js";
import type { LoadedVersion } from "../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../agent/runtime/runtime.js";
import { createServingLayer, type ServingLayer } from "../../agent/serving/serving-layer.js";
import { systemClock } from "../../shared/clock.js";
import { sha256Hex } from "../../shared/hash.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { Manifest } from "../../shared/schemas/manifest.js";

/** Shared set-up of the local serving benchmarks (issue 8): models built with onnx-proto, a real runtime and socket. */

const proto: typeof onnx = onnxProto.onnx;
const FLOAT = 1;

const io = (name: string, dims: (number | string)[]): onnx.IValueInfoProto => ({
  name,
  type: {
    tensorType: {
      elemType: FLOAT,
      shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
    },
  },
});

/** y = relu(x), any shape [n, c, h, w]: nearly free compute, so transport dominates. */
export function reluModel(): Uint8Array {
  return encode(
    [io("x", ["n", 3, "h", "w"])],
    [io("y", ["n", 3, "h", "w"])],
    [{ opType: "Relu", input: ["x"], output: ["y"], name: "relu" }],
  );
}

/** y = x·W, x [n, k], W [k, k] (constant): a model with a batch dimension. */
export function matmulModel(k: number): Uint8Array {
  const w: onnx.ITensorProto = {
    name: "W",
    dataType: FLOAT,
    dims: [k, k],
    floatData: Array.from({ length: k * k }, (_, i) => ((i * 7919) % 13) / 13 - 0.5),
  };
  return encode(
    [io("x", ["n", k])],
    [io("y", ["n", k])],
    [{ opType: "MatMul", input: ["x", "W"], output: ["y"], name: "mm" }],
    [w],
  );
}

function encode(
  input: onnx.IValueInfoProto[],
  output: onnx.IValueInfoProto[],
  node: onnx.INodeProto[],
  initializer: onnx.ITensorProto[] = [],
): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: "edgefleet-bench",
    opsetImport: [{ domain: "", version: 13 }],
    graph: { name: "bench", node, initializer, input, output },
  };
  return proto.ModelProto.encode(proto.ModelProto.create(model)).finish();
}

export interface ServingFixture {
  dir: string;
  profile: DeviceProfile;
  runtime: AgentModelRuntime;
  serving: ServingLayer;
  api: SocketApi;
  socketPath: string;
  client: SocketClient;
  /** Installs and loads `bytes` as model@version (activated unless `activate: false`). */
  install(
    model: string,
    version: string,
    bytes: Uint8Array,
    inputShape: number[],
    opts?: { activate?: boolean; background?: boolean; outputs?: string[] },
  ): Promise<LoadedVersion>;
  close(): Promise<void>;
}

/** `tune` adjusts the device profile (generic-x64) before the runtime is built from it. */
export async function startServingFixture(
  opts: {
    tune?: (profile: DeviceProfile) => DeviceProfile;
    onInferStages?: (s: InferStages) => void;
    /** false: every agent ↔ host payload on the socket (the transport before side payloads). */
    sidePayloads?: boolean;
  } = {},
): Promise<ServingFixture> {
  const dir = await mkdtemp(join(tmpdir(), "ef-bench-serving-"));
  const base = await loadProfileFile(new URL("../../device-profiles/generic-x64.json", import.meta.url).pathname);
  const profile = opts.tune ? opts.tune(base) : base;
  const log = pino({ level: "silent" });
  const runtime = createModelRuntime({
    log,
    clock: systemClock,
    profile,
    ...(opts.sidePayloads === false ? { host: { sidePayloadRoot: null } } : {}),
  });
  const serving = createServingLayer({ log, backend: runtime });
  const socketPath = join(dir, "a.sock");
  // 128 MiB: a 1×3×640×640 FP32 tensor as JSON text is ~25 MB, over the agent's default 16 MiB limit.
  const api = createSocketApi({
    log,
    runtime,
    status: () => ({}),
    socketPath,
    version: "0.0.0-bench",
    serving,
    bodyLimit: 128 * 1024 * 1024,
    ...(opts.onInferStages ? { onInferStages: opts.onInferStages } : {}),
  });
  await api.listen();
  let n = 0;
  return {
    dir,
    profile,
    runtime,
    serving,
    api,
    socketPath,
    client: new SocketClient(socketPath),
    async install(model, version, bytes, inputShape, opts = {}) {
      const vdir = join(dir, `${model}-${version}`);
      await mkdir(vdir, { recursive: true });
      await writeFile(join(vdir, "model.onnx"), bytes);
      const spec = [{ name: "x", datatype: "FP32" as const, shape: inputShape.map(() => -1) }];
      const manifest: Manifest = {
        _type: "manifest",
        model: { name: model, version, variant: "fp32" },
        releaseCounter: 1,
        createdAt: "2026-01-01T00:00:00Z",
        files: [{ path: "model.onnx", size: bytes.length, sha256: sha256Hex(bytes) }],
        inputs: spec,
        outputs: (opts.outputs ?? ["y"]).map((name) => ({
          name,
          datatype: "FP32" as const,
          shape: inputShape.map(() => -1),
        })),
        opset: 13,
        compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
        lineage: {},
        quantization: null,
      };
      n += 1;
      const loaded = await runtime.load(
        {
          model,
          version,
          variant: "fp32",
          sha256: String(n).repeat(64).slice(0, 64),
          releaseCounter: 1,
          dir: vdir,
          manifest,
        },
        { background: opts.background === true },
      );
      if (opts.activate !== false) await runtime.activate(loaded);
      return loaded;
    },
    async close() {
      serving.close();
      await api.close();
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `workers` clients sending `perWorker` requests each, back to back; returns requests per second. */
export async function throughput(workers: number, perWorker: number, send: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = 0; i < perWorker; i++) await send();
    }),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return Math.round(((workers * perWorker) / s) * 10) / 10;
}
