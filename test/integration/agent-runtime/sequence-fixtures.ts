import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { request } from "node:http";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { createSocketApi } from "../../../agent/api/socket-api.js";
import type { InstalledModel } from "../../../agent/runtime/model-runtime.js";
import { createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createSequenceStore } from "../../../agent/runtime/sequence-store.js";
import { type Clock, systemClock } from "../../../shared/clock.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { SequenceSpec } from "../../../shared/schemas/sequence.js";
import type { SamplesFile } from "../../../shared/schemas/tensor.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { SILERO_V5, sileroManifest, type TempModels, testLog, testProfile } from "./fixtures.js";

const SILERO_LEGACY = SILERO_V5.replace("silero_vad_v5.onnx", "silero_vad_legacy.onnx");

/** Silero VAD v5's implicit state (issue 18): `state` ← `stateN`, zeros at the start; `sr` = 16 kHz. */
export const SILERO_SEQUENCE: SequenceSpec = {
  state: [{ input: "state", output: "stateN", initial: { datatype: "FP32", shape: [2, 1, 128], fill: 0 } }],
  constants: [{ input: "sr", value: { datatype: "INT64", shape: [], data: [16000] } }],
  windows: [],
  stateCompatibleWith: [],
};

export const FRAME = 512;

/** A bundle of Silero whose manifest declares its sequence state. */
export async function installStateful(
  models: TempModels,
  version: string,
  extra: Partial<SequenceSpec> = {},
): Promise<InstalledModel> {
  const base = await models.install(version);
  return { ...base, manifest: { ...sileroManifest(version), sequence: { ...SILERO_SEQUENCE, ...extra } } };
}

/**
 * The older Silero VAD (another graph, another state: `h`←`hn`, `c`←`cn`, [2,1,64] each) as a stateful
 * version of the same model "vad": a swap between it and v5 can only keep sequences right if each
 * finishes where it started.
 */
export async function installLegacy(models: TempModels, version: string): Promise<InstalledModel> {
  const bytes = readFileSync(SILERO_LEGACY);
  const dir = path.join(models.root, `vad-legacy-${version}`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "model.onnx"), bytes);
  const zeros = (n: number) => new Array(n).fill(0);
  const warm: SamplesFile = {
    samples: [
      {
        inputs: {
          input: { datatype: "FP32", shape: [1, FRAME], data: zeros(FRAME) },
          sr: { datatype: "INT64", shape: [], data: [16000] },
          h: { datatype: "FP32", shape: [2, 1, 64], data: zeros(128) },
          c: { datatype: "FP32", shape: [2, 1, 64], data: zeros(128) },
        },
        outputs: {},
        tolerance: { abs: 1e-4, rel: 1e-3 },
      },
    ],
  };
  await writeFile(path.join(dir, "samples.json"), JSON.stringify(warm));
  const base = sileroManifest(version);
  const state = (input: string, output: string) => ({
    input,
    output,
    initial: { datatype: "FP32" as const, shape: [2, 1, 64], fill: 0 },
  });
  return {
    model: "vad",
    version,
    variant: "fp32",
    sha256: "1".repeat(64),
    releaseCounter: 1,
    dir,
    manifest: {
      ...base,
      files: [{ path: "model.onnx", size: bytes.length, sha256: sha256Hex(bytes) }],
      inputs: [
        { name: "input", datatype: "FP32", shape: [1, -1] },
        { name: "sr", datatype: "INT64", shape: [] },
        { name: "h", datatype: "FP32", shape: [2, -1, 64] },
        { name: "c", datatype: "FP32", shape: [2, -1, 64] },
      ],
      outputs: [
        { name: "output", datatype: "FP32", shape: [-1, 1] },
        { name: "hn", datatype: "FP32", shape: [2, -1, 64] },
        { name: "cn", datatype: "FP32", shape: [2, -1, 64] },
      ],
      sequence: {
        state: [state("h", "hn"), state("c", "cn")],
        constants: [{ input: "sr", value: { datatype: "INT64", shape: [], data: [16000] } }],
        windows: [],
        stateCompatibleWith: [],
      },
    },
  };
}

/**
 * A deterministic 16 kHz waveform, `frames` frames of 512 samples: speech-like bursts (a 120–220 Hz
 * voiced tone with three harmonics, a 4 Hz syllable envelope and a little noise) alternating with
 * near-silence, burst and pause lengths drawn from `seed`. Math.fround: exactly what a float32 carries.
 */
export function speechLikeWave(seed: number, frames: number): Float32Array {
  const rnd = seededRandom(seed);
  const out = new Float32Array(frames * FRAME);
  let i = 0;
  let speaking = rnd() < 0.5;
  while (i < out.length) {
    const len = Math.floor((speaking ? 0.25 + rnd() * 0.5 : 0.15 + rnd() * 0.3) * 16_000);
    const f0 = 120 + rnd() * 100;
    const amp = 0.2 + rnd() * 0.4;
    for (let k = 0; k < len && i < out.length; k++, i++) {
      const t = k / 16_000;
      const noise = (rnd() - 0.5) * (speaking ? 0.02 : 0.004);
      let v = noise;
      if (speaking) {
        const env = 0.5 - 0.5 * Math.cos(2 * Math.PI * 4 * t);
        let voiced = 0;
        for (let h = 1; h <= 3; h++) voiced += Math.sin(2 * Math.PI * f0 * h * t) / h;
        v += amp * env * voiced;
      }
      out[i] = Math.fround(v);
    }
    speaking = !speaking;
  }
  return out;
}

export const frameOf = (wave: Float32Array, n: number) => wave.subarray(n * FRAME, (n + 1) * FRAME);

/**
 * The in-process reference: onnxruntime in this process, the loop carrying the state itself, with the
 * session options the test profile gives the model host (one thread, sequential, all optimizations).
 */
export async function referenceProbabilities(waves: Float32Array[], legacy = false): Promise<number[][]> {
  const session = await InferenceSession.create(legacy ? SILERO_LEGACY : SILERO_V5, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    extra: { "session.intra_op.allow_spinning": "0" },
  });
  const sr = new Tensor("int64", BigInt64Array.from([16000n]), []);
  const all: number[][] = [];
  for (const wave of waves) {
    let state: Tensor = new Tensor("float32", new Float32Array(256), [2, 1, 128]);
    let h: Tensor = new Tensor("float32", new Float32Array(128), [2, 1, 64]);
    let c: Tensor = new Tensor("float32", new Float32Array(128), [2, 1, 64]);
    const probs: number[] = [];
    for (let n = 0; n < wave.length / FRAME; n++) {
      const input = new Tensor("float32", frameOf(wave, n).slice(), [1, FRAME]);
      const r = await session.run(legacy ? { input, h, c, sr } : { input, state, sr });
      probs.push((r.output!.data as Float32Array)[0]!);
      if (legacy) {
        h = r.hn as Tensor;
        c = r.cn as Tensor;
      } else state = r.stateN as Tensor;
    }
    all.push(probs);
  }
  await session.release();
  return all;
}

export interface Reply {
  status: number;
  body: { code?: string; error?: string; model_version?: string; outputs?: { name: string; data: number[] }[] };
}

/** One JSON v2 request on the agent's Unix socket. */
export function post(socketPath: string, urlPath: string, body: unknown): Promise<Reply> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method: "POST",
        path: urlPath,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

/** A sequence frame as a v2 body: only the audio; the state and `sr` are the agent's. */
export function frameBody(id: string, frame: Float32Array, start: boolean, end: boolean) {
  return {
    parameters: { sequence_id: id, sequence_start: start, sequence_end: end },
    inputs: [{ name: "input", datatype: "FP32", shape: [1, FRAME], data: Array.from(frame) }],
  };
}

/** The speech probability of one reply (throws with the agent's words on an error reply). */
export function probability(r: Reply): number {
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.code} ${r.body.error}`);
  const out = r.body.outputs?.find((o) => o.name === "output");
  if (!out) throw new Error(`no "output" in ${JSON.stringify(r.body)}`);
  return out.data[0]!;
}

/**
 * A model runtime, its sequence store (on `storeClock`: a fake one drives expiry in tests) and the
 * agent's socket API serving both on `{models.root}/agent.sock`, listening.
 */
export async function serveSequences(models: TempModels, storeClock: Clock = systemClock) {
  const socketPath = path.join(models.root, "agent.sock");
  const runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  const store = createSequenceStore({ runtime, clock: storeClock, log: testLog });
  const api = createSocketApi({
    log: testLog,
    runtime,
    socketPath,
    version: "0.1.0",
    status: () => ({}),
    sequences: store,
  });
  await api.listen();
  return { socketPath, runtime, store, api };
}
