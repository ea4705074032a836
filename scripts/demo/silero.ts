import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { sha256Hex } from "../../shared/hash.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { JsonTensor, SampleInput } from "../../shared/schemas/tensor.js";

/**
 * Silero VAD v5, shipped inside the @ricky0123/vad-web npm package (architecture.md §8: real models
 * come from npm packages, never from a hub). Inputs: `input` float32 [1,512] audio at 16 kHz,
 * `state` float32 [2,1,128], `sr` int64 scalar. Outputs: `output` [1,1] speech probability,
 * `stateN` [2,1,128].
 */
export function sileroModelPath(version: "v5" | "legacy" = "v5"): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@ricky0123/vad-web/package.json");
  return join(dirname(pkg), "dist", version === "v5" ? "silero_vad_v5.onnx" : "silero_vad_legacy.onnx");
}

/** A deterministic 512-sample frame: a tone of `hz` plus a little deterministic noise. */
export function sileroInputs(hz = 440, amplitude = 0.3): Record<string, JsonTensor> {
  const audio: number[] = [];
  let seed = 12345;
  for (let i = 0; i < 512; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const noise = (seed / 2147483648 - 0.5) * 0.02;
    audio.push(Math.fround(amplitude * Math.sin((2 * Math.PI * hz * i) / 16000) + noise));
  }
  return {
    input: { datatype: "FP32", shape: [1, 512], data: audio },
    state: { datatype: "FP32", shape: [2, 1, 128], data: new Array(256).fill(0) },
    sr: { datatype: "INT64", shape: [], data: [16000] },
  };
}

export function sileroSamples(): SampleInput[] {
  return [
    { name: "tone-440", inputs: sileroInputs(440) },
    { name: "tone-1000-quiet", inputs: sileroInputs(1000, 0.05) },
    { name: "silence", inputs: sileroInputs(0, 0) },
  ];
}

/**
 * An unsigned manifest for Silero VAD v5 with its real file hash, for benchmarks and tests that load
 * the model into the agent runtime directly (no fleet server, no bundle).
 */
export function sileroManifest(version = "5.0.0"): Manifest {
  const bytes = readFileSync(sileroModelPath());
  return {
    _type: "manifest",
    model: { name: "silero-vad", version, variant: "fp32" },
    releaseCounter: 1,
    createdAt: "2026-01-01T00:00:00Z",
    files: [{ path: "model.onnx", size: bytes.length, sha256: sha256Hex(bytes) }],
    inputs: [
      { name: "input", datatype: "FP32", shape: [-1, -1] },
      { name: "state", datatype: "FP32", shape: [2, -1, 128] },
      { name: "sr", datatype: "INT64", shape: [] },
    ],
    outputs: [
      { name: "output", datatype: "FP32", shape: [-1, 1] },
      { name: "stateN", datatype: "FP32", shape: [-1, -1, -1] },
    ],
    opset: 16,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  };
}
