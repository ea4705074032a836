import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { InstalledModel } from "../../agent/runtime/model-runtime.js";
import { sha256Hex } from "../../shared/hash.js";
import type { Datatype } from "../../shared/schemas/common.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { buildModel, node, valueInfo } from "../helpers/onnx-builder.js";

/**
 * One tiny model per v2 datatype (onnx-proto): input `x` [n, 3] of the type, outputs
 * `y = Identity(x)` and, for numeric types, `z = Add(x, x)` (two outputs, so output filtering shows).
 */
export const ELEM: Record<Datatype, number> = {
  FP32: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  BYTES: 8,
  BOOL: 9,
  FP16: 10,
  FP64: 11,
  UINT32: 12,
  UINT64: 13,
};
export const DATATYPES = Object.keys(ELEM) as Datatype[];
/** Types ORT's CPU Add kernel implements (the rest only get Identity). */
export const ADDABLE = new Set<Datatype>(["FP32", "FP64", "INT32", "INT64", "UINT32", "UINT64", "FP16"]);

export function datatypeModel(dt: Datatype): Uint8Array {
  const add = ADDABLE.has(dt);
  return buildModel({
    opset: 14,
    inputs: [valueInfo("x", ["n", 3], ELEM[dt])],
    outputs: [valueInfo("y", ["n", 3], ELEM[dt]), ...(add ? [valueInfo("z", ["n", 3], ELEM[dt])] : [])],
    nodes: [node("Identity", ["x"], ["y"]), ...(add ? [node("Add", ["x", "x"], ["z"])] : [])],
  });
}

export function manifestFor(name: string, dt: Datatype, version = "1.0.0"): Manifest {
  return {
    _type: "manifest",
    model: { name, version, variant: "fp32" },
    releaseCounter: 1,
    createdAt: "2025-01-01T00:00:00Z",
    files: [{ path: "model.onnx", size: 1, sha256: "0".repeat(64) }],
    inputs: [{ name: "x", datatype: dt, shape: [-1, 3] }],
    outputs: [
      { name: "y", datatype: dt, shape: [-1, 3] },
      ...(ADDABLE.has(dt) ? [{ name: "z", datatype: dt, shape: [-1, 3] }] : []),
    ],
    opset: 14,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  };
}

/** Writes `bytes` as a model dir the runtime can load. */
export async function installModel(
  root: string,
  name: string,
  version: string,
  bytes: Uint8Array,
  manifest: Manifest,
  sha256 = `${name}-${version}`.padEnd(64, "0").slice(0, 64),
): Promise<InstalledModel> {
  const dir = join(root, `${name}-${version}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "model.onnx"), bytes);
  // The host loads only bytes that hash to the manifest's entry, so the entry must be the real one.
  const files = [{ path: "model.onnx", size: bytes.length, sha256: sha256Hex(bytes) }];
  return { model: name, version, variant: "fp32", sha256, releaseCounter: 1, dir, manifest: { ...manifest, files } };
}

/** A [2,3] input with values that exercise each type (negatives, fractions, unicode). */
export function sampleInput(dt: Datatype): JsonTensor {
  const values: Record<Datatype, (number | boolean | string)[]> = {
    BOOL: [true, false, true, false, false, true],
    UINT8: [0, 1, 127, 128, 200, 255],
    INT8: [-128, -1, 0, 1, 64, 127],
    UINT16: [0, 1, 300, 32768, 40000, 65535],
    INT16: [-32768, -300, 0, 1, 300, 32767],
    UINT32: [0, 1, 70000, 2 ** 31, 3e9, 2 ** 31 - 1],
    INT32: [-(2 ** 31), -70000, 0, 1, 70000, 2 ** 30],
    UINT64: [0, 1, 2 ** 33, 2 ** 40, 12345678901, 2 ** 52],
    INT64: [-(2 ** 52), -(2 ** 33), 0, 1, 2 ** 33, 2 ** 51],
    FP16: [0, 1.5, -2.25, 0.099975586, 1024, -600],
    FP32: [0, 1.5, -2.25, Math.fround(0.1), 3e37, -1e-30],
    FP64: [0, 1.5, -2.25, 0.1, 1e300, -1e-300],
    BYTES: ["", "a", "hello", "ünïcødé", "emoji 🎉", "x".repeat(100)],
  };
  return { datatype: dt, shape: [2, 3], data: values[dt] };
}
