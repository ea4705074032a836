import type { NodeDecision, QuantizeOptions, WeightEncoding } from "../../shared/schemas/quantization-report.js";
import { type ConstDef, type GraphScan, isFloatWeight, nodeLabel, type Use } from "./graph-scan.js";
import { elementCount, floatAttr, intAttr } from "./onnx-model.js";

// The options and decisions are recorded in the quantizer's report, so their types come from its
// schema (shared/schemas/quantization-report.ts, issue 23).
export type { QuantizeOptions, WeightEncoding };
export type Decision = NodeDecision;

export const DEFAULT_QUANTIZE_OPTIONS: QuantizeOptions = {
  minElements: 256,
  dynamicMinElements: 4096,
  dynamicMatMul: true,
  reduceRange: true,
  keepFp32: [],
};

/** How a dynamic MatMul/Gemm use reads the weight: as stored ([K,N]) or transposed (Gemm transB=1). */
export interface DynamicUse {
  use: Use;
  transpose: boolean;
  alpha: number;
  /** Gemm bias: name to add as-is, or a constant to scale by beta first. */
  bias: { name: string; scaleBy?: { def: ConstDef; beta: number } } | null;
}

export interface WeightPlan {
  def: ConstDef;
  dynamic: DynamicUse[];
  weightOnly: Use[];
  /** Channel axis for the weight-only encoding. */
  axis: number;
}

/** Inputs of known weight-bearing ops that hold weights, and the per-channel axis that fits them. */
const WEIGHT_INPUTS: Record<string, { indices: number[]; axis: (use: Use, rank: number) => number }> = {
  Conv: { indices: [1], axis: () => 0 },
  // ConvTranspose weights are [C_in, C_out/group, k...]; per output channel is axis 1.
  ConvTranspose: { indices: [1], axis: () => 1 },
  MatMul: { indices: [0, 1], axis: (u, rank) => (u.index === 1 ? rank - 1 : rank - 2) },
  Gemm: {
    indices: [0, 1],
    axis: (u) => (u.index === 1 ? (intAttr(u.node, "transB", 0) ? 0 : 1) : intAttr(u.node, "transA", 0) ? 1 : 0),
  },
  // W/R are [num_directions, gates*hidden, input]; one scale per gate row. B (index 3) is a bias: kept.
  LSTM: { indices: [1, 2], axis: () => 1 },
  GRU: { indices: [1, 2], axis: () => 1 },
  RNN: { indices: [1, 2], axis: () => 1 },
  Gather: { indices: [0], axis: () => 0 },
};

/** Data-movement ops a weight may flow through on its way to a weight-bearing op (e.g. Silero's Slice/Concat into LSTM). */
const PASS_THROUGH: Record<string, number[] | "any"> = {
  Slice: [0],
  Concat: "any",
  Reshape: [0],
  Transpose: [0],
  Squeeze: [0],
  Unsqueeze: [0],
  Identity: [0],
  Split: [0],
  Flatten: [0],
};

export function planWeights(
  scan: GraphScan,
  opset: number,
  opts: QuantizeOptions,
): { plans: WeightPlan[]; decisions: Decision[] } {
  const plans: WeightPlan[] = [];
  const decisions: Decision[] = [];
  const decide = (use: Use, action: Decision["action"], weight: string, reason?: string) =>
    decisions.push({
      node: nodeLabel(use.node),
      op: use.node.opType ?? "?",
      action,
      weight,
      ...(reason !== undefined ? { reason } : {}),
      ...(use.scope.path !== "main" ? { scope: use.scope.path } : {}),
    });
  const isWeightUse = (u: Use) => !u.node.domain && WEIGHT_INPUTS[u.node.opType ?? ""]?.indices.includes(u.index);

  for (const def of scan.defs.values()) {
    if (!isFloatWeight(def)) continue;
    const uses = scan.uses.get(def.name) ?? [];
    if (uses.length === 0) continue;
    const count = elementCount(def.dims);
    const skipAll = (reason: string) => {
      for (const u of uses) if (isWeightUse(u)) decide(u, "skipped", def.name, reason);
    };
    if (scan.ambiguous.has(def.name)) {
      skipAll("the weight's name is defined in more than one scope");
      continue;
    }
    if (scan.pinned.has(def.name)) {
      skipAll("the weight is also a graph input or output (callers may override or read it)");
      continue;
    }
    if (opts.keepFp32.includes(def.name)) {
      skipAll("kept in fp32 on request (keepFp32)");
      continue;
    }
    if (count < opts.minElements) {
      skipAll(`${count} elements < ${opts.minElements}: too small for the size saving to matter`);
      continue;
    }
    if (opset < 7) {
      skipAll(`opset ${opset} < 7 has no broadcasting Mul to dequantize with`);
      continue;
    }
    const blocked = uses.find((u) => !isWeightUse(u) && !isPassThrough(u));
    if (blocked) {
      skipAll(
        `also read by ${nodeLabel(blocked.node)} (${blocked.node.opType} input ${blocked.index}), which may need exact values`,
      );
      continue;
    }
    const plan: WeightPlan = { def, dynamic: [], weightOnly: [], axis: 0 };
    for (const u of uses) {
      const dyn = dynamicUse(u, def, scan, opset, opts, count);
      if (dyn) plan.dynamic.push(dyn);
      else plan.weightOnly.push(u);
    }
    const anchor = plan.weightOnly.find(isWeightUse);
    if (anchor) plan.axis = WEIGHT_INPUTS[anchor.node.opType!]!.axis(anchor, def.dims.length);
    plan.axis = Math.min(Math.max(plan.axis, 0), def.dims.length - 1);
    for (const d of plan.dynamic) decide(d.use, "dynamic-int8", def.name);
    for (const u of plan.weightOnly) decide(u, "weight-only-int8", def.name);
    plans.push(plan);
  }

  // Weight-bearing nodes whose weight is not a constant at all (e.g. LSTM weights assembled by
  // Concat at run time, or attention MatMuls of two activations): say so, so no node is silent.
  for (const { node, scope } of scan.nodes) {
    const spec = WEIGHT_INPUTS[node.opType ?? ""];
    if (!spec || node.domain || node.opType === "Gather") continue;
    const weightInputs = spec.indices.map((i) => node.input?.[i]).filter((n): n is string => !!n);
    if (weightInputs.some((n) => scan.defs.has(n))) continue;
    const use: Use = { node, scope, index: spec.indices[0]! };
    decide(use, "skipped", weightInputs.join(", "), "weight input is computed at run time, not a constant");
  }
  return { plans, decisions };
}

function isPassThrough(u: Use): boolean {
  if (u.node.domain) return false;
  const allowed = PASS_THROUGH[u.node.opType ?? ""];
  return allowed === "any" || (allowed?.includes(u.index) ?? false);
}

function dynamicUse(
  u: Use,
  def: ConstDef,
  scan: GraphScan,
  opset: number,
  opts: QuantizeOptions,
  count: number,
): DynamicUse | null {
  // DynamicQuantizeLinear exists from opset 11; MatMulInteger from 10.
  if (!opts.dynamicMatMul || opset < 11 || count < opts.dynamicMinElements || u.index !== 1) return null;
  if (def.dims.length !== 2 || u.node.domain) return null;
  if (u.node.opType === "MatMul") return { use: u, transpose: false, alpha: 1, bias: null };
  if (u.node.opType !== "Gemm" || intAttr(u.node, "transA", 0) !== 0) return null;
  const alpha = floatAttr(u.node, "alpha", 1);
  const beta = floatAttr(u.node, "beta", 1);
  const c = u.node.input?.[2];
  let bias: DynamicUse["bias"] = null;
  if (c) {
    if (beta === 1) bias = { name: c };
    else {
      const cDef = scan.defs.get(c);
      if (!cDef || cDef.dataType !== def.dataType || scan.ambiguous.has(c)) return null;
      bias = { name: c, scaleBy: { def: cDef, beta } };
    }
  }
  return { use: u, transpose: intAttr(u.node, "transB", 0) === 1, alpha, bias };
}
