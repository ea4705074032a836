import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";
import { seededRandom } from "../../shared/seeded-random.js";

/** The package is CommonJS: under Node's ESM loader only its default export exists. */
const proto: typeof onnx = onnxProto.onnx;
const FLOAT = 1;

export interface PerturbOptions {
  /** Which MatMul/Gemm counted from the end (0 = the last one: the classifier head). */
  fromEnd?: number;
  /** Relative change of each weight (a fine-tune's small step). */
  relative?: number;
  seed?: number;
}

/**
 * "Retrains" one layer: multiplies every weight of the chosen MatMul/Gemm by (1 + relative·u), u in [-1, 1),
 * and re-encodes the model with onnx-proto (as a re-export would). The weight may be a graph initializer or
 * a Constant node's tensor (paddle2onnx exports keep weights there). Returns the new model and the name of
 * the perturbed tensor.
 */
export function perturbFinalMatMul(
  model: Uint8Array,
  opts: PerturbOptions = {},
): { bytes: Uint8Array; tensor: string } {
  const m = proto.ModelProto.decode(model);
  const g = m.graph;
  if (!g) throw new Error("model has no graph");
  const tensors = new Map<string, onnx.ITensorProto>();
  for (const t of g.initializer ?? []) if (t.name) tensors.set(t.name, t);
  for (const n of g.node ?? []) {
    const t = n.opType === "Constant" ? n.attribute?.find((a) => a.name === "value")?.t : undefined;
    if (t && n.output?.[0]) tensors.set(n.output[0], t);
  }
  const layers = (g.node ?? []).filter(
    (n) => (n.opType === "MatMul" || n.opType === "Gemm") && (n.input ?? []).some((i) => tensors.has(i)),
  );
  const layer = layers[layers.length - 1 - (opts.fromEnd ?? 0)];
  if (!layer) throw new Error("no MatMul/Gemm with a constant weight");
  const name = (layer.input ?? []).find((i) => tensors.has(i)) as string;
  const t = tensors.get(name) as onnx.ITensorProto;
  if (t.dataType !== FLOAT) throw new Error(`${name} is not FP32`);
  const rand = seededRandom(opts.seed ?? 17);
  const rel = opts.relative ?? 1e-2;
  if (t.rawData && t.rawData.length > 0) {
    const raw = Buffer.from(t.rawData);
    for (let i = 0; i + 4 <= raw.length; i += 4) raw.writeFloatLE(raw.readFloatLE(i) * (1 + rel * (2 * rand() - 1)), i);
    t.rawData = raw;
  } else if (t.floatData) {
    t.floatData = t.floatData.map((v) => v * (1 + rel * (2 * rand() - 1)));
  }
  return { bytes: proto.ModelProto.encode(m).finish(), tensor: name };
}

/**
 * The same model with every FP32 `float_data` initializer stored as `raw_data` instead (what real exporters
 * write, and what tensor-level deltas address); onnx-proto's tiny test models use `float_data`.
 */
export function withRawData(model: Uint8Array): Uint8Array {
  const m = proto.ModelProto.decode(model);
  for (const t of m.graph?.initializer ?? []) {
    if (t.dataType !== FLOAT || !t.floatData || t.floatData.length === 0) continue;
    const raw = Buffer.alloc(t.floatData.length * 4);
    for (const [i, v] of t.floatData.entries()) raw.writeFloatLE(v, i * 4);
    t.rawData = raw;
    t.floatData = [];
  }
  return proto.ModelProto.encode(m).finish();
}
