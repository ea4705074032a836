import { EdgeFleetError } from "../../shared/errors.js";
import type { QuantizerReport, WeightRecord } from "../../shared/schemas/quantization-report.js";
import { type GraphScan, scanModel, uniqueName } from "./graph-scan.js";
import {
  DT,
  defaultOpset,
  elementCount,
  floatTensor,
  type GraphProto,
  int8Tensor,
  intAttribute,
  type ModelProto,
  makeNode,
  type NodeProto,
  num,
  readFloats,
  subgraphsOfAttr,
  type TensorProto,
} from "./onnx-model.js";
import {
  DEFAULT_QUANTIZE_OPTIONS,
  type DynamicUse,
  planWeights,
  type QuantizeOptions,
  type WeightEncoding,
  type WeightPlan,
} from "./plan.js";
import { qmaxFor, quantizePerChannel, transpose2d } from "./quant-math.js";

export type { WeightRecord };

export interface QuantizationResult {
  model: ModelProto;
  /** Recorded in the int8 manifest with the validation added (shared/schemas/quantization-report.ts). */
  report: QuantizerReport;
}

/** Pending graph edits, applied at the end so node positions stay valid while planning. */
interface Edits {
  prepend: Map<GraphProto, NodeProto[]>;
  replace: Map<NodeProto, NodeProto[]>;
  addInit: Map<GraphProto, TensorProto[]>;
  removeInit: Set<TensorProto>;
}

/**
 * The int8 transform: weights of MatMul/Gemm become the dynamic-quantization chain onnxruntime
 * fuses into DynamicQuantizeMatMul; other weights (Conv, LSTM, embeddings...) are stored as
 * int8 with per-channel scales and dequantized in the graph. Works on a decoded ModelProto
 * (mutated in place and returned); never changes the model's opset.
 */
export function quantizeModel(
  model: ModelProto,
  options: Partial<QuantizeOptions> = {},
  /** Called before the first weight and after each one: weights processed so far. */
  onProgress?: (done: number, total: number) => void,
): QuantizationResult {
  const opts = { ...DEFAULT_QUANTIZE_OPTIONS, ...options };
  const opset = defaultOpset(model);
  if (opset === null) throw new EdgeFleetError("VALIDATION_FAILED", "the model imports no default-domain opset");
  // IR < 4 requires every initializer to be a graph input; our new int8 tensors are not.
  if (num(model.irVersion) < 4) {
    throw new EdgeFleetError("VALIDATION_FAILED", `IR version ${num(model.irVersion)} < 4 is not supported for int8`);
  }
  const weightOnlyEncoding: WeightEncoding = opset >= 13 ? "dequantize-linear-per-axis" : "cast-mul-per-channel";
  const scan = scanModel(model);
  const { plans, decisions } = planWeights(scan, opset, opts);
  const edits: Edits = { prepend: new Map(), replace: new Map(), addInit: new Map(), removeInit: new Set() };
  onProgress?.(0, plans.length);
  const weights = plans.map((p, i) => {
    const record = applyPlan(p, scan, edits, weightOnlyEncoding, opts);
    onProgress?.(i + 1, plans.length);
    return record;
  });
  if (model.graph) applyEdits(model.graph, edits);
  const totals = {
    weightsQuantized: weights.length,
    dynamicNodes: decisions.filter((d) => d.action === "dynamic-int8").length,
    weightOnlyNodes: decisions.filter((d) => d.action === "weight-only-int8").length,
    bytesBefore: weights.reduce((a, w) => a + w.bytesBefore, 0),
    bytesAfter: weights.reduce((a, w) => a + w.bytesAfter, 0),
  };
  return {
    model,
    report: { method: "int8-weights", opset, weightOnlyEncoding, options: opts, nodes: decisions, weights, totals },
  };
}

function push<K, V>(map: Map<K, V[]>, key: K, ...values: V[]): void {
  const list = map.get(key) ?? [];
  list.push(...values);
  map.set(key, list);
}

function applyPlan(
  plan: WeightPlan,
  scan: GraphScan,
  edits: Edits,
  encoding: WeightEncoding,
  opts: QuantizeOptions,
): WeightRecord {
  const { def } = plan;
  const data = readFloats(def.tensor);
  const record: WeightRecord = {
    name: def.name,
    dims: def.dims,
    encodings: [],
    axis: plan.axis,
    bytesBefore: elementCount(def.dims) * 4,
    bytesAfter: 0,
  };
  // The float weight disappears; what replaces it lives in the scope that defined it, so every
  // reader (including nested subgraphs) still sees it.
  const home = def.scope.graph;
  const defNodes: NodeProto[] = [];
  if (plan.weightOnly.length > 0) {
    const cq = quantizePerChannel(data, def.dims, plan.axis);
    const qName = uniqueName(scan, `${def.name}_quantized`);
    const sName = uniqueName(scan, `${def.name}_scale`);
    const inits: TensorProto[] = [int8Tensor(qName, def.dims, cq.q)];
    if (encoding === "dequantize-linear-per-axis") {
      // DequantizeLinear-13 with a 1-D scale/zero point is per-axis: y = (x - zp[c]) * scale[c].
      const zName = uniqueName(scan, `${def.name}_zero_point`);
      inits.push(
        floatTensor(sName, [cq.scales.length], cq.scales),
        int8Tensor(zName, [cq.zeroPoints.length], cq.zeroPoints),
      );
      defNodes.push(
        makeNode("DequantizeLinear", [qName, sName, zName], [def.name], uniqueName(scan, `${def.name}_dequantize`), [
          intAttribute("axis", plan.axis),
        ]),
      );
      record.bytesAfter += cq.q.length + cq.scales.length * 5;
    } else {
      // Before opset 13 DequantizeLinear is per-tensor only. Cast(int8 -> float) then Mul with a
      // scale shaped [1,..,C,..,1] is the same per-axis formula (zero point 0) using only
      // Cast-6 and the multidirectional broadcasting of Mul-7, valid in every opset from 7 on.
      const bshape = def.dims.map((d, i) => (i === plan.axis ? d : 1));
      inits.push(floatTensor(sName, bshape, cq.scales));
      const castOut = uniqueName(scan, `${def.name}_int8_as_float`);
      defNodes.push(
        makeNode("Cast", [qName], [castOut], uniqueName(scan, `${def.name}_cast`), [intAttribute("to", DT.FLOAT)]),
        makeNode("Mul", [castOut, sName], [def.name], uniqueName(scan, `${def.name}_rescale`)),
      );
      record.bytesAfter += cq.q.length + cq.scales.length * 4;
    }
    push(edits.addInit, home, ...inits);
    record.encodings.push(encoding);
  }
  if (plan.dynamic.length > 0) {
    // One quantized copy per layout: a weight shared by several MatMuls is quantized once.
    const layouts = new Map<boolean, { q: string; scale: string; scales: Float32Array }>();
    for (const d of plan.dynamic) {
      let layout = layouts.get(d.transpose);
      if (!layout) {
        const [rows, cols] = def.dims as [number, number];
        const kn = d.transpose ? transpose2d(data, rows, cols) : data;
        const kDims = d.transpose ? [cols, rows] : [rows, cols];
        const cq = quantizePerChannel(kn, kDims, 1, qmaxFor(opts.reduceRange));
        const suffix = d.transpose ? "_kn" : "";
        layout = {
          q: uniqueName(scan, `${def.name}${suffix}_quantized_u8s8`),
          scale: uniqueName(scan, `${def.name}${suffix}_column_scale`),
          scales: cq.scales,
        };
        push(
          edits.addInit,
          home,
          int8Tensor(layout.q, kDims, cq.q),
          floatTensor(layout.scale, [cq.scales.length], cq.scales),
        );
        record.bytesAfter += cq.q.length + cq.scales.length * 4;
        layouts.set(d.transpose, layout);
      }
      edits.replace.set(d.use.node, dynamicChain(d, layout, scan, edits));
    }
    record.encodings.push("matmul-integer-per-column");
  }
  if (def.kind === "initializer") {
    edits.removeInit.add(def.tensor);
    if (defNodes.length > 0) push(edits.prepend, home, ...defNodes);
  } else {
    // A Constant node is replaced in place, so the dequantized value appears exactly where the
    // float one did (node order in a graph must stay topological).
    edits.replace.set(def.node!, defNodes);
  }
  return record;
}

/**
 * MatMul(A, W) -> DynamicQuantizeLinear(A) -> MatMulInteger(A_q, W_q, A_zp) -> Cast(float)
 * -> Mul(Mul(A_scale, W_scale)). With W symmetric (zero point 0) this is
 * sum_k (a_q - a_zp) * w_q[k,n] * a_scale * w_scale[n], i.e. A*W up to rounding (MatMulInteger
 * and DynamicQuantizeLinear specs). This exact pattern is what onnxruntime's
 * MatMulIntegerToFloat fusion turns into one DynamicQuantizeMatMul kernel.
 */
function dynamicChain(
  d: DynamicUse,
  layout: { q: string; scale: string; scales: Float32Array },
  scan: GraphScan,
  edits: Edits,
): NodeProto[] {
  const node = d.use.node;
  const base = node.name || node.output?.[0] || "matmul";
  const a = node.input![0]!;
  const out = node.output![0]!;
  const n = (suffix: string) => uniqueName(scan, `${base}/${suffix}`);
  const [aq, as, azp, mmi, mmf, prod] = ["a_quant", "a_scale", "a_zero_point", "int32", "float", "scale"].map(n) as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  let wScale = layout.scale;
  if (d.alpha !== 1) {
    // Gemm's alpha folds into the column scales exactly: alpha * (A*W) = A * (W * alpha).
    wScale = uniqueName(scan, `${base}/column_scale_alpha`);
    const scaled = layout.scales.map((s) => Math.fround(s * d.alpha));
    push(edits.addInit, d.use.scope.graph, floatTensor(wScale, [scaled.length], scaled));
  }
  const mmOut = d.bias ? n("matmul") : out;
  const nodes = [
    makeNode("DynamicQuantizeLinear", [a], [aq, as, azp], n("DynamicQuantizeLinear")),
    makeNode("MatMulInteger", [aq, layout.q, azp], [mmi], n("MatMulInteger")),
    makeNode("Cast", [mmi], [mmf], n("Cast"), [intAttribute("to", DT.FLOAT)]),
    makeNode("Mul", [as, wScale], [prod], n("ScaleProduct")),
    makeNode("Mul", [mmf, prod], [mmOut], n("Rescale")),
  ];
  if (d.bias) {
    let biasName = d.bias.name;
    if (d.bias.scaleBy) {
      // Gemm: Y = alpha*A*B + beta*C; a constant C is pre-multiplied by beta once.
      const { def, beta } = d.bias.scaleBy;
      biasName = uniqueName(scan, `${base}/bias_beta`);
      const scaled = readFloats(def.tensor).map((v) => Math.fround(v * beta));
      push(edits.addInit, d.use.scope.graph, floatTensor(biasName, def.dims, scaled));
    }
    nodes.push(makeNode("Add", [mmOut, biasName], [out], n("Bias")));
  }
  return nodes;
}

/** Rewrites every graph (main and nested) that the plan touched. */
function applyEdits(graph: GraphProto, edits: Edits): void {
  for (const node of graph.node ?? []) {
    for (const a of node.attribute ?? []) for (const g of subgraphsOfAttr(a)) applyEdits(g, edits);
  }
  graph.node = [...(edits.prepend.get(graph) ?? []), ...(graph.node ?? []).flatMap((n) => edits.replace.get(n) ?? [n])];
  graph.initializer = [
    ...(graph.initializer ?? []).filter((t) => !edits.removeInit.has(t)),
    ...(edits.addInit.get(graph) ?? []),
  ];
}
