import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketApi } from "../../../agent/api/socket-api.js";
import { SocketClient } from "../../../agent/client/socket-client.js";
import type { InstalledModel } from "../../../agent/runtime/model-runtime.js";
import type { AgentModelRuntime } from "../../../agent/runtime/runtime.js";
import { sha256Hex } from "../../../shared/hash.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { type TempModels, tempModels } from "./fixtures.js";
import { serveSequences } from "./sequence-fixtures.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** openWakeWord's "hello deepa" classifier, from the openwakeword-js npm package: [1,25,96] embeddings → score. */
const HELLO_DEEPA = path.join(ROOT, "node_modules/openwakeword-js/models/hello_deepa.onnx");
const X = "onnx::Flatten_0";
const STEPS = 25;
const DIM = 96;

async function installWakeWord(models: TempModels): Promise<InstalledModel> {
  const bytes = readFileSync(HELLO_DEEPA);
  const dir = path.join(models.root, "hello-deepa");
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "model.onnx"), bytes);
  const zeros = new Array(STEPS * DIM).fill(0);
  await writeFile(
    path.join(dir, "samples.json"),
    JSON.stringify({
      samples: [
        {
          inputs: { [X]: { datatype: "FP32", shape: [1, STEPS, DIM], data: zeros } },
          outputs: {},
          tolerance: { abs: 1e-4, rel: 1e-3 },
        },
      ],
    }),
  );
  return {
    model: "hello-deepa",
    version: "1.0.0",
    variant: "fp32",
    sha256: "2".repeat(64),
    releaseCounter: 1,
    dir,
    manifest: {
      _type: "manifest",
      model: { name: "hello-deepa", version: "1.0.0", variant: "fp32" },
      releaseCounter: 1,
      createdAt: "2025-01-01T00:00:00Z",
      files: [{ path: "model.onnx", size: bytes.length, sha256: sha256Hex(bytes) }],
      inputs: [{ name: X, datatype: "FP32", shape: [1, STEPS, DIM] }],
      outputs: [{ name: "39", datatype: "FP32", shape: [1, 1] }],
      opset: 13,
      compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
      lineage: {},
      quantization: null,
      sequence: {
        state: [],
        windows: [{ input: X, axis: 1, initial: { datatype: "FP32", shape: [1, STEPS, DIM], fill: 0 } }],
        constants: [],
        stateCompatibleWith: [],
      },
    },
  };
}

/**
 * Deterministic stand-ins for openWakeWord's 96-dim speech embeddings (its mel and embedding models
 * are not in the npm package): slowly drifting vectors with bursts, so the window's content matters.
 */
function embeddings(seed: number, n: number): Float32Array[] {
  const rnd = seededRandom(seed);
  const base = Float32Array.from({ length: DIM }, () => rnd() * 2 - 1);
  return Array.from({ length: n }, (_, t) => {
    const burst = Math.floor(t / 10) % 2 === 0 ? 1 : 0.2;
    return Float32Array.from(base, (b, i) =>
      Math.fround(burst * (b + Math.sin(t * 0.3 + i) * 0.5) + (rnd() - 0.5) * 0.1),
    );
  });
}

/** The in-process reference: a loop keeping the last 25 embeddings itself, zeros at the start. */
async function referenceScores(steps: Float32Array[]): Promise<number[]> {
  const session = await InferenceSession.create(HELLO_DEEPA, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  });
  let window = new Float32Array(STEPS * DIM);
  const scores: number[] = [];
  for (const e of steps) {
    const next = new Float32Array(STEPS * DIM);
    next.set(window.subarray(DIM));
    next.set(e, (STEPS - 1) * DIM);
    window = next;
    const r = await session.run({ [X]: new Tensor("float32", window.slice(), [1, STEPS, DIM]) });
    scores.push((r["39"]!.data as Float32Array)[0]!);
  }
  await session.release();
  return scores;
}

/** Issue 18 §4: openWakeWord's classifier as a sliding-window stream, the window kept in the model host. */
describe("sliding-window streams (openWakeWord hello_deepa)", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let api: SocketApi;
  let client: SocketClient;

  beforeAll(async () => {
    models = await tempModels();
    let sock: string;
    ({ socketPath: sock, runtime, api } = await serveSequences(models));
    client = new SocketClient(sock);
    await runtime.activate(await runtime.load(await installWakeWord(models)));
  });
  afterAll(async () => {
    await api?.close();
    await runtime?.close();
    await models?.cleanup();
  });

  it("gives the in-process reference's scores when the app streams one embedding at a time", async () => {
    const steps = embeddings(7, 60);
    const expected = await referenceScores(steps);
    // Scores that never change would not show the window moving.
    expect(new Set(expected).size).toBeGreaterThan(30);
    const s = client.stream("hello-deepa");
    const writer = (async () => {
      for (const e of steps) await s.write([{ name: X, datatype: "FP32", shape: [1, 1, DIM], data: Array.from(e) }]);
      await s.end();
    })();
    const got: number[] = [];
    for await (const r of s.results()) {
      if ("error" in r) throw new Error(`${r.code}: ${r.error}`);
      got.push(r.outputs[0]!.data[0] as number);
    }
    await writer;
    expect(got).toEqual(expected);
  });

  it("refuses a frame whose steps do not fit the window", async () => {
    const seq = client.sequence("hello-deepa");
    await expect(
      seq.infer([{ name: X, datatype: "FP32", shape: [1, 1, 95], data: new Array(95).fill(0) }]),
    ).rejects.toMatchObject({
      status: 400,
      body: { code: "INVALID_TENSOR" },
    });
  });
});
