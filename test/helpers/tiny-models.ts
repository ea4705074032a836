import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

/**
 * Tiny ONNX models built with onnx-proto for runtime tests (architecture.md §8). All share one signature —
 * input `x` FP32 [1,4], output `y` FP32 [1,4] — so any of them can replace another as a new version:
 * - `linear`: y = x·W + b, W = scale·I. Finite for every finite input.
 * - `slow`: the same y, plus a chain of 256×256 MatMuls that depends on x (so it cannot be
 *   constant-folded) and contributes 0·sum(...) to y: same outputs, measurably slower.
 * - `nonFinite`: the same y plus 0·log(min(x)): finite for positive inputs (what the golden samples
 *   hold, so it passes the smoke test), NaN as soon as a request has a value ≤ 0.
 */
export type TinyKind = "linear" | "slow" | "nonFinite";

/** The package is CommonJS: under Node's ESM loader only its default export exists. */
const proto: typeof onnx = onnxProto.onnx;
const FLOAT = 1;
const INT64 = 7;

function floatTensor(name: string, dims: number[], values: number[]): onnx.ITensorProto {
  return { name, dataType: FLOAT, dims, floatData: values };
}

function node(op: string, inputs: string[], outputs: string[], attrs: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { opType: op, input: inputs, output: outputs, name: `${op}_${outputs[0]}`, attribute: attrs };
}

export interface TinyModelOptions {
  /** Scale of W (lets two "linear" versions give different outputs). */
  scale?: number;
  /** MatMuls in the slow chain (default 40: about 10 ms per run on one x64 core). */
  slowDepth?: number;
}

export function buildTinyModel(kind: TinyKind, opts: TinyModelOptions = {}): Uint8Array {
  const scale = opts.scale ?? 1;
  const eye = Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? scale : 0));
  const initializer: onnx.ITensorProto[] = [
    floatTensor("W", [4, 4], eye),
    floatTensor("b", [4], [0.5, -0.25, 0.125, 1]),
    floatTensor("zero", [], [0]),
  ];
  const nodes: onnx.INodeProto[] = [node("MatMul", ["x", "W"], ["xw"])];
  let extra: string | null = null;

  if (kind === "slow") {
    const depth = opts.slowDepth ?? 40;
    const n = 256;
    initializer.push({ name: "reps", dataType: INT64, dims: [2], int64Data: [n, 1] });
    initializer.push(floatTensor("A", [4, n], new Array(4 * n).fill(1 / 4)));
    initializer.push(floatTensor("B", [n, n], new Array(n * n).fill(1 / n)));
    nodes.push(node("Tile", ["x", "reps"], ["tiled"]));
    nodes.push(node("MatMul", ["tiled", "A"], ["m0"]));
    for (let i = 0; i < depth; i++) nodes.push(node("MatMul", [`m${i}`, "B"], [`m${i + 1}`]));
    nodes.push(node("ReduceSum", [`m${depth}`], ["s"]));
    nodes.push(node("Mul", ["s", "zero"], ["z"]));
    extra = "z";
  } else if (kind === "nonFinite") {
    nodes.push(node("ReduceMin", ["x"], ["mn"]));
    nodes.push(node("Log", ["mn"], ["lg"]));
    nodes.push(node("Mul", ["lg", "zero"], ["z"]));
    extra = "z";
  }
  if (extra) {
    nodes.push(node("Add", ["xw", "b"], ["lin"]));
    nodes.push(node("Add", ["lin", extra], ["y"]));
  } else nodes.push(node("Add", ["xw", "b"], ["y"]));

  const io = (name: string): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }] } } },
  });
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: "edgefleet-tests",
    opsetImport: [{ domain: "", version: 13 }],
    graph: { name: `tiny-${kind}`, node: nodes, initializer, input: [io("x")], output: [io("y")] },
  };
  return proto.ModelProto.encode(proto.ModelProto.create(model)).finish();
}

export async function writeTinyModel(dir: string, kind: TinyKind, opts: TinyModelOptions = {}): Promise<string> {
  const path = join(dir, `tiny-${kind}-${opts.scale ?? 1}.onnx`);
  await writeFile(path, buildTinyModel(kind, opts));
  return path;
}

/** A request tensor for the tiny models. */
export function tinyInput(values: [number, number, number, number]): Record<string, JsonTensor> {
  return { x: { datatype: "FP32", shape: [1, 4], data: values } };
}

/** Golden samples (inputs only; the fleet server records outputs): all strictly positive. */
export function tinySamples(): { name: string; inputs: Record<string, JsonTensor> }[] {
  return [
    { name: "ones", inputs: tinyInput([1, 1, 1, 1]) },
    { name: "ramp", inputs: tinyInput([0.5, 1.5, 2.5, 3.5]) },
    { name: "small", inputs: tinyInput([0.01, 0.02, 0.03, 0.04]) },
  ];
}
