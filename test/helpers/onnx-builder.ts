import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";

/**
 * Builds tiny ONNX models with onnx-proto for tests (architecture.md §8: tiny models come from helpers,
 * nothing is downloaded). Deterministic: weights come from a seeded generator.
 */
const proto: typeof onnx = onnxProto.onnx;
const FLOAT = 1;

export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

export function floatTensor(name: string, dims: number[], data: Float32Array): onnx.ITensorProto {
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function valueInfo(name: string, shape: (number | string)[], elemType = FLOAT): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: onnx.IAttributeProto[] = [],
  name = `${opType}_${outputs[0]}`,
): onnx.INodeProto {
  return { opType, input: inputs, output: outputs, attribute: attrs, name };
}

export const intAttr = (name: string, i: number): onnx.IAttributeProto => ({ name, type: 2, i });
export const floatAttr = (name: string, f: number): onnx.IAttributeProto => ({ name, type: 1, f });
export const graphAttr = (name: string, g: onnx.IGraphProto): onnx.IAttributeProto => ({ name, type: 5, g });
export const tensorAttr = (name: string, t: onnx.ITensorProto): onnx.IAttributeProto => ({ name, type: 4, t });

export function constantNode(output: string, dims: number[], data: Float32Array): onnx.INodeProto {
  return node("Constant", [], [output], [tensorAttr("value", floatTensor("", dims, data))], `const_${output}`);
}

export interface ModelSpec {
  opset: number;
  nodes: onnx.INodeProto[];
  inputs: onnx.IValueInfoProto[];
  outputs: onnx.IValueInfoProto[];
  initializers?: onnx.ITensorProto[];
  irVersion?: number;
}

export function buildModel(spec: ModelSpec): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: spec.irVersion ?? (spec.opset >= 13 ? 7 : spec.opset >= 10 ? 5 : 4),
    producerName: "edgefleet-test",
    opsetImport: [{ domain: "", version: spec.opset }],
    graph: {
      name: "test",
      node: spec.nodes,
      input: spec.inputs,
      output: spec.outputs,
      initializer: spec.initializers ?? [],
    },
  };
  return proto.ModelProto.encode(model).finish();
}

export function decode(bytes: Uint8Array): onnx.ModelProto {
  return proto.ModelProto.decode(bytes);
}

/** Every op type in the model, subgraphs included. */
export function opTypes(model: onnx.IModelProto): string[] {
  const out: string[] = [];
  const walk = (g: onnx.IGraphProto) => {
    for (const n of g.node ?? []) {
      out.push(n.opType ?? "");
      for (const a of n.attribute ?? []) {
        if (a.g) walk(a.g);
        for (const sg of a.graphs ?? []) walk(sg);
      }
    }
  };
  if (model.graph) walk(model.graph);
  return out;
}

/**
 * MatMul-heavy MLP: x [batch, 64] -> MatMul W1 [64,256] -> Add b1 -> Relu -> MatMul W2 [256,256]
 * -> Relu -> Gemm(W3 [32,256], transB=1, alpha, beta, C) -> y [batch, 32]. Exercises the dynamic
 * path for MatMul and for Gemm (transposed, with alpha/beta folded).
 */
export function mlpModel(opset = 13): Uint8Array {
  return buildModel({
    opset,
    inputs: [valueInfo("x", ["batch", 64])],
    outputs: [valueInfo("y", ["batch", 32])],
    initializers: [
      floatTensor("W1", [64, 256], randomFloats(64 * 256, 1, 0.2)),
      floatTensor("b1", [256], randomFloats(256, 2, 0.1)),
      floatTensor("W2", [256, 256], randomFloats(256 * 256, 3, 0.1)),
      floatTensor("W3", [32, 256], randomFloats(32 * 256, 4, 0.1)),
      floatTensor("C3", [32], randomFloats(32, 5, 0.5)),
    ],
    nodes: [
      node("MatMul", ["x", "W1"], ["h1"]),
      node("Add", ["h1", "b1"], ["h1b"]),
      node("Relu", ["h1b"], ["a1"]),
      node("MatMul", ["a1", "W2"], ["h2"]),
      node("Relu", ["h2"], ["a2"]),
      node("Gemm", ["a2", "W3", "C3"], ["y"], [intAttr("transB", 1), floatAttr("alpha", 0.5), floatAttr("beta", 2)]),
    ],
  });
}
