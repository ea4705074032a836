import { readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { InstalledModel } from "../../../agent/runtime/model-runtime.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { DeviceProfile } from "../../../shared/schemas/device-profile.js";
import type { Manifest } from "../../../shared/schemas/manifest.js";
import type { JsonTensor, SamplesFile } from "../../../shared/schemas/tensor.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const SILERO_V5 = path.join(ROOT, "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx");
const SILERO_BYTES = readFileSync(SILERO_V5);

export const testLog = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

export const testProfile: DeviceProfile = {
  id: "test",
  description: "test profile: one thread, no spinning",
  match: { deviceTreeModel: [], arch: [] },
  priority: 100,
  session: {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    enableCpuMemArena: true,
    enableMemPattern: true,
    executionProviders: ["cpu"],
    extra: { "session.intra_op.allow_spinning": "0" },
  },
  preferredVariants: ["fp32"],
  memoryBudgetMB: 1024,
  maxLoadedModels: 4,
  buffers: { telemetryMaxRows: 1000, telemetryMaxBytes: 1 << 20 },
};

export function sileroManifest(version: string): Manifest {
  return {
    _type: "manifest",
    model: { name: "vad", version, variant: "fp32" },
    releaseCounter: 1,
    createdAt: "2025-01-01T00:00:00Z",
    // The real hash: the host loads only bytes that match the manifest.
    files: [{ path: "model.onnx", size: SILERO_BYTES.length, sha256: sha256Hex(SILERO_BYTES) }],
    inputs: [
      { name: "input", datatype: "FP32", shape: [1, -1] },
      { name: "state", datatype: "FP32", shape: [2, -1, 128] },
      { name: "sr", datatype: "INT64", shape: [] },
    ],
    outputs: [
      { name: "output", datatype: "FP32", shape: [-1, 1] },
      { name: "stateN", datatype: "FP32", shape: [2, -1, 128] },
    ],
    opset: 16,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  };
}

/** Deterministic pseudo-audio so outputs are not trivially zero. */
export function sileroInputs(seed = 1): Record<string, JsonTensor> {
  const audio: number[] = [];
  for (let i = 0; i < 512; i++)
    audio.push(Math.fround(Math.sin((i + seed * 37) * 0.05) * 0.3 + ((i * seed) % 7) * 0.01));
  return {
    input: { datatype: "FP32", shape: [1, 512], data: audio },
    state: { datatype: "FP32", shape: [2, 1, 128], data: new Array(256).fill(0) },
    sr: { datatype: "INT64", shape: [], data: [16000] },
  };
}

export interface TempModels {
  root: string;
  install(version: string, samples?: SamplesFile): Promise<InstalledModel>;
  cleanup(): Promise<void>;
}

export async function tempModels(): Promise<TempModels> {
  const root = await mkdtemp(path.join(os.tmpdir(), "ef-runtime-"));
  return {
    root,
    async install(version, samples) {
      const dir = path.join(root, `vad-${version}`);
      await mkdir(dir, { recursive: true });
      await copyFile(SILERO_V5, path.join(dir, "model.onnx"));
      // A real bundle always has samples; the runtime warms up on the first one. Outputs are not checked then.
      const warm: SamplesFile = {
        samples: [{ inputs: sileroInputs(1), outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } }],
      };
      await writeFile(path.join(dir, "samples.json"), JSON.stringify(samples ?? warm));
      return {
        model: "vad",
        version,
        variant: "fp32",
        sha256: "0".repeat(64),
        releaseCounter: 1,
        dir,
        manifest: sileroManifest(version),
      };
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
