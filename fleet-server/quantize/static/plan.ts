import { type GraphScan, nodeLabel } from "../graph-scan.js";
import { DT, floatAttr, intAttr, type NodeProto } from "../onnx-model.js";

/**
 * Which nodes the static int8 transform rewrites, pure. A target is a main-graph Conv, MatMul
 * or Gemm whose weight is a float constant: it becomes QLinearConv / QLinearMatMul between a
 * QuantizeLinear of its input and a DequantizeLinear of its output. A Relu that is the only
 * reader of the output is fused: the output's calibrated range then starts at 0, so the uint8
 * requantization itself clamps negatives (zero point 0) and the Relu node disappears.
 */
export interface StaticTarget {
  node: NodeProto;
  label: string;
  op: "Conv" | "MatMul" | "Gemm";
  /** Float activation read by the integer kernel. */
  input: string;
  weight: string;
  /** Conv: folded into the int32 bias. Gemm: added after dequantizing (C may broadcast). */
  bias: string | null;
  /** Gemm transB=1: the weight is stored [N, K] and must be transposed to QLinearMatMul's [K, N]. */
  transposeWeight: boolean;
  /** The float tensor the rewritten chain produces: the Relu's output when one is fused. */
  output: string;
  fusedRelu: NodeProto | null;
}

export interface StaticDecision {
  node: string;
  op: string;
  action: "static-int8" | "kept-fp32";
  reason?: string;
  fusedRelu?: boolean;
}

export interface StaticPlan {
  targets: StaticTarget[];
  decisions: StaticDecision[];
  /** Float tensors whose ranges calibration must measure (targets' inputs, and Conv outputs). */
  calibrate: string[];
}

/**
 * Plans targets. `keepFp32` holds node labels (graph-scan `nodeLabel`) the operator or the
 * accuracy fallback wants left in fp32.
 */
export function planStatic(
  scan: GraphScan,
  keepFp32: ReadonlySet<string>,
  opts: { minWeightElements?: number; depthwise?: boolean } = {},
): StaticPlan {
  const minWeightElements = opts.minWeightElements ?? 64;
  const targets: StaticTarget[] = [];
  const decisions: StaticDecision[] = [];
  const isConst = (name: string | undefined) => {
    const def = name ? scan.defs.get(name) : undefined;
    return !!def && def.scope.path === "main" && def.dataType === DT.FLOAT && !scan.ambiguous.has(def.name);
  };
  for (const { node, scope } of scan.nodes) {
    const op = node.opType;
    if (scope.path !== "main" || node.domain || (op !== "Conv" && op !== "MatMul" && op !== "Gemm")) continue;
    const label = nodeLabel(node);
    const keep = (reason: string) => decisions.push({ node: label, op, action: "kept-fp32", reason });
    const [input, weight, bias] = [node.input?.[0], node.input?.[1], node.input?.[2] || null];
    if (!input || !weight || !isConst(weight) || isConst(input)) {
      keep("the weight is not a float constant (or the input is)");
      continue;
    }
    const dims = scan.defs.get(weight)!.dims;
    if (dims.reduce((a, b) => a * b, 1) < minWeightElements) {
      keep(
        `weight of ${dims.reduce((a, b) => a * b, 1)} elements < ${minWeightElements}: requantizing costs more than it saves`,
      );
      continue;
    }
    if (op === "Conv" && (dims.length < 3 || (bias !== null && !isConst(bias)))) {
      keep("Conv weight of rank < 3 or a bias that is not a constant");
      continue;
    }
    if (op === "Conv" && !opts.depthwise && intAttr(node, "group", 1) > 1) {
      // Measured (benchmarks.md "Static int8"): onnxruntime's uint8 depthwise kernel is slower
      // than its fp32 one at these sizes, and depthwise layers carry most of the int8 error.
      keep("grouped/depthwise Conv: kept fp32 (slower and less accurate in int8 here)");
      continue;
    }
    if (op !== "Conv" && dims.length !== 2) {
      keep(`${op} weight of rank ${dims.length}, not a 2-D matrix`);
      continue;
    }
    if (
      op === "Gemm" &&
      (intAttr(node, "transA", 0) !== 0 || floatAttr(node, "alpha", 1) !== 1 || floatAttr(node, "beta", 1) !== 1)
    ) {
      keep("Gemm with transA, alpha or beta: not a plain x·W + C");
      continue;
    }
    if (keepFp32.has(label)) {
      keep("kept in fp32 (keepFp32Nodes or the accuracy fallback)");
      continue;
    }
    const y = node.output?.[0];
    if (!y) continue;
    const readers = scan.uses.get(y) ?? [];
    // Only QLinearConv requantizes its output; the MatMul chain ends in float (see transform.ts).
    const relu = op === "Conv" && readers.length === 1 && !scan.pinned.has(y) ? readers[0]!.node : null;
    const fusedRelu = relu && relu.opType === "Relu" && !relu.domain && readers[0]!.scope.path === "main" ? relu : null;
    targets.push({
      node,
      label,
      op,
      input,
      weight,
      bias,
      transposeWeight: op === "Gemm" && intAttr(node, "transB", 0) === 1,
      output: fusedRelu ? fusedRelu.output![0]! : y,
      fusedRelu,
    });
    decisions.push({ node: label, op, action: "static-int8", ...(fusedRelu ? { fusedRelu: true } : {}) });
  }
  const calibrate = [...new Set(targets.flatMap((t) => (t.op === "Conv" ? [t.input, t.output] : [t.input])))];
  return { targets, decisions, calibrate };
}

/** A quantized node's own error: its int8 output against fp32's, both computed from the exact fp32 input. */
export interface NodeError {
  label: string;
  /** max |int8 - fp32| / max |fp32| of the node's output over the calibration feeds. */
  relError: number;
}

/**
 * The accuracy fallback's order, pure: most sensitive node first (largest own error), ties by
 * name so the order is deterministic. Keeping the first k of this list in fp32 is the
 * candidate for "k nodes kept".
 */
export function sensitivityOrder(errors: NodeError[]): string[] {
  return [...errors].sort((a, b) => b.relError - a.relError || a.label.localeCompare(b.label)).map((e) => e.label);
}

/**
 * The smallest k in [lo, hi] for which `passes(k)` holds, assuming more fp32 nodes never hurt
 * accuracy (monotone), in O(log(hi - lo)) calls: each call quantizes, loads and judges a whole
 * model, so a linear walk over 60 Convs would cost a minute per upload. `hi` itself is assumed
 * to pass and is not called (returning `hi` means the search found nothing smaller).
 */
export async function smallestPassing(
  lo: number,
  hi: number,
  passes: (k: number) => Promise<boolean>,
): Promise<number> {
  let a = lo;
  let b = hi;
  while (a < b) {
    const mid = Math.floor((a + b) / 2);
    if (await passes(mid)) b = mid;
    else a = mid + 1;
  }
  return a;
}
