import { type GraphScan, uniqueName } from "../graph-scan.js";
import {
  DT,
  floatTensor,
  int8Tensor,
  intAttribute,
  type ModelProto,
  makeNode,
  type NodeProto,
  readFloats,
  type TensorProto,
} from "../onnx-model.js";
import { quantizePerChannel, transpose2d } from "../quant-math.js";
import { removeUnusedInitializers } from "./bn-fold.js";
import { quantizeBias, type U8Params } from "./calibration.js";
import type { StaticTarget } from "./plan.js";

export interface StaticTransformStats {
  convNodes: number;
  matmulNodes: number;
  fusedRelus: number;
  /** QuantizeLinear nodes inserted (activations entering int8). */
  quantizeNodes: number;
  /** DequantizeLinear nodes inserted (int8 activations leaving for fp32 readers). */
  dequantizeNodes: number;
}

/**
 * Rewrites the planned targets with calibrated activation parameters (pure on the ModelProto,
 * mutated in place). Conv becomes QLinearConv between uint8 activations; consecutive Convs
 * pass uint8 straight through (the tensor between them has one calibrated range, so the
 * producer's output parameters are the consumer's input parameters), and a DequantizeLinear
 * appears only where an fp32 reader needs the value. MatMul/Gemm become the static counterpart
 * of the dynamic chain: QuantizeLinear(x) -> MatMulInteger -> Cast -> Mul(x_scale * w_scale[n])
 * (+ bias), which needs no output range (the result is float, so a Gemm bias and a following
 * Relu stay exact fp32 ops).
 */
export function applyStatic(
  model: ModelProto,
  scan: GraphScan,
  targets: StaticTarget[],
  params: ReadonlyMap<string, U8Params>,
  /**
   * "shadow" leaves the fp32 graph as it is and appends, per target, its int8 chain fed from the
   * exact fp32 input, writing `shadowName(reference)`: one run then gives every node's own
   * int8 error (the accuracy fallback's sensitivity measure).
   */
  mode: "replace" | "shadow" = "replace",
): StaticTransformStats {
  const shadow = mode === "shadow";
  const graph = model.graph!;
  const stats: StaticTransformStats = {
    convNodes: 0,
    matmulNodes: 0,
    fusedRelus: 0,
    quantizeNodes: 0,
    dequantizeNodes: 0,
  };
  const inits: TensorProto[] = [];
  const replace = new Map<NodeProto, NodeProto[]>();
  const drop = new Set<NodeProto>();
  const paramOf = (name: string) => {
    const p = params.get(name);
    if (!p) throw new Error(`no calibrated range for ${name}`);
    return p;
  };
  // uint8 copies of float activations, with their scale/zero-point initializer names.
  const quantized = new Map<string, { q: string; scale: string; zp: string }>();
  const scalarParams = (name: string) => {
    const p = paramOf(name);
    const scale = uniqueName(scan, `${name}/scale`);
    const zp = uniqueName(scan, `${name}/zero_point`);
    inits.push(floatTensor(scale, [], new Float32Array([p.scale])), u8Scalar(zp, p.zeroPoint));
    return { scale, zp };
  };
  // A value needs its float form when something other than an integer kernel reads it.
  const needsFloat = (name: string) =>
    scan.pinned.has(name) || (scan.uses.get(name) ?? []).length > targets.filter((t) => t.input === name).length;
  const quantizeInput = (name: string, nodes: NodeProto[]) => {
    let q = quantized.get(name);
    if (!q) {
      const { scale, zp } = scalarParams(name);
      q = { q: uniqueName(scan, `${name}/u8`), scale, zp };
      nodes.push(makeNode("QuantizeLinear", [name, scale, zp], [q.q], uniqueName(scan, `${name}/QuantizeLinear`)));
      quantized.set(name, q);
      stats.quantizeNodes++;
    }
    return q;
  };
  const weightOf = (t: StaticTarget) => scan.defs.get(t.weight)!;

  for (const t of targets) {
    const nodes: NodeProto[] = [];
    const base = t.label;
    // A Conv whose input another quantized Conv produces already has its uint8 copy registered.
    const x = quantizeInput(t.input, nodes);
    const xp = paramOf(t.input);
    const w = weightOf(t);
    if (t.op === "Conv") {
      const cq = quantizePerChannel(readFloats(w.tensor), w.dims, 0, 127);
      const [wq, ws, wzp] = ["weight_s8", "weight_scale", "weight_zero_point"].map((s) =>
        uniqueName(scan, `${base}/${s}`),
      ) as [string, string, string];
      inits.push(
        int8Tensor(wq, w.dims, cq.q),
        floatTensor(ws, [cq.scales.length], cq.scales),
        int8Tensor(wzp, [cq.scales.length], cq.zeroPoints),
      );
      const { scale: ys, zp: yzp } = scalarParams(t.output);
      const yq = uniqueName(scan, `${t.output}/u8`);
      const inputs = [x.q, x.scale, x.zp, wq, ws, wzp, ys, yzp];
      if (t.bias) {
        const bName = uniqueName(scan, `${base}/bias_s32`);
        const b = quantizeBias(readFloats(scan.defs.get(t.bias)!.tensor), xp.scale, cq.scales);
        inits.push({ name: bName, dims: [b.length], dataType: DT.INT32, rawData: new Uint8Array(b.buffer) });
        inputs.push(bName);
      }
      nodes.push(
        makeNode("QLinearConv", inputs, [yq], uniqueName(scan, `${base}/QLinearConv`), t.node.attribute ?? []),
      );
      if (!shadow) quantized.set(t.output, { q: yq, scale: ys, zp: yzp });
      if (shadow || needsFloat(t.output)) {
        const y = shadow ? shadowName(t.output) : t.output;
        nodes.push(makeNode("DequantizeLinear", [yq, ys, yzp], [y], uniqueName(scan, `${t.output}/DequantizeLinear`)));
        stats.dequantizeNodes++;
      }
      stats.convNodes++;
      if (t.fusedRelu && !shadow) {
        drop.add(t.fusedRelu);
        stats.fusedRelus++;
      }
    } else {
      const [rows, cols] = w.dims as [number, number];
      const data = readFloats(w.tensor);
      const kn = t.transposeWeight ? transpose2d(data, rows, cols) : data;
      const kDims = t.transposeWeight ? [cols, rows] : [rows, cols];
      const cq = quantizePerChannel(kn, kDims, 1, 127);
      const combined = cq.scales.map((s) => Math.fround(s * xp.scale));
      const [wq, sc, acc, accF] = ["weight_s8", "output_scale", "int32", "float"].map((s) =>
        uniqueName(scan, `${base}/${s}`),
      ) as [string, string, string, string];
      inits.push(int8Tensor(wq, kDims, cq.q), floatTensor(sc, [combined.length], combined));
      const y = shadow ? shadowName(t.output) : t.output;
      const scaled = t.bias ? uniqueName(scan, `${base}/scaled`) : y;
      nodes.push(
        makeNode("MatMulInteger", [x.q, wq, x.zp], [acc], uniqueName(scan, `${base}/MatMulInteger`)),
        makeNode("Cast", [acc], [accF], uniqueName(scan, `${base}/Cast`), [intAttribute("to", DT.FLOAT)]),
        makeNode("Mul", [accF, sc], [scaled], uniqueName(scan, `${base}/Rescale`)),
      );
      if (t.bias) nodes.push(makeNode("Add", [scaled, t.bias], [y], uniqueName(scan, `${base}/Bias`)));
      stats.matmulNodes++;
    }
    replace.set(t.node, nodes);
  }
  // Shadow chains go last: every fp32 value they read is defined by then.
  graph.node = shadow
    ? [...(graph.node ?? []), ...replace.values()].flat()
    : (graph.node ?? []).filter((n) => !drop.has(n)).flatMap((n) => replace.get(n) ?? [n]);
  graph.initializer = [...(graph.initializer ?? []), ...inits];
  removeUnusedInitializers(model);
  return stats;
}

/** Where shadow mode writes the int8 version of a target's output. */
export function shadowName(output: string): string {
  return `${output}/int8_shadow`;
}

function u8Scalar(name: string, value: number): TensorProto {
  return { name, dims: [], dataType: DT.UINT8, rawData: new Uint8Array([value]) };
}
