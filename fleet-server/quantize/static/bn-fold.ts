import { type GraphScan, scanModel, uniqueName } from "../graph-scan.js";
import { DT, floatAttr, floatTensor, type ModelProto, type NodeProto, readFloats } from "../onnx-model.js";

export interface BatchNormParams {
  gamma: Float32Array;
  beta: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  epsilon: number;
}

/**
 * Folds an inference-mode BatchNormalization into the convolution before it, pure:
 * BN(conv(x)) = k * (W*x + b - mean) + beta with k = gamma / sqrt(var + eps) per output channel,
 * i.e. a convolution with weights W' = k * W (row c scaled by k[c]) and bias b' = k * (b - mean) + beta.
 * Why it matters for static int8: a separate BN would sit between the integer Conv and its
 * requantization, forcing a dequantize/requantize round trip (and an extra rounding) per layer.
 */
export function foldBatchNorm(
  weight: Float32Array,
  bias: Float32Array | null,
  bn: BatchNormParams,
): { weight: Float32Array; bias: Float32Array } {
  const channels = bn.gamma.length;
  if (weight.length % channels !== 0) {
    throw new RangeError(`weight of ${weight.length} elements is not ${channels} output channels`);
  }
  const inner = weight.length / channels;
  const w = new Float32Array(weight.length);
  const b = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    const k = bn.gamma[c]! / Math.sqrt(bn.variance[c]! + bn.epsilon);
    for (let i = 0; i < inner; i++) w[c * inner + i] = weight[c * inner + i]! * k;
    b[c] = ((bias?.[c] ?? 0) - bn.mean[c]!) * k + bn.beta[c]!;
  }
  return { weight: w, bias: b };
}

/**
 * Rewrites every main-graph Conv -> BatchNormalization pair whose parameters are constants and
 * whose Conv output feeds only that BN (and is not a graph output) into one Conv with folded
 * weights. New initializers get fresh names: the original weights may be shared. Returns the
 * number of pairs folded; the model is mutated.
 */
export function foldConvBatchNorms(model: ModelProto): number {
  const graph = model.graph;
  if (!graph) return 0;
  const scan = scanModel(model);
  const floats = (name: string | undefined) => constFloats(scan, name);
  const drop = new Set<NodeProto>();
  for (const conv of graph.node ?? []) {
    if (conv.opType !== "Conv" || conv.domain) continue;
    const y = conv.output?.[0];
    const readers = y ? (scan.uses.get(y) ?? []) : [];
    const bn = readers[0]?.node;
    if (!y || readers.length !== 1 || scan.pinned.has(y) || bn?.opType !== "BatchNormalization" || bn.domain) continue;
    if ((bn.output ?? []).filter(Boolean).length !== 1 || readers[0]!.scope.path !== "main") continue;
    const weight = floats(conv.input?.[1]);
    const [gamma, beta, mean, variance] = (bn.input ?? []).slice(1, 5).map(floats);
    const hasBias = !!conv.input?.[2];
    const bias = hasBias ? floats(conv.input?.[2]) : null;
    if (!weight || !gamma || !beta || !mean || !variance || (hasBias && !bias)) continue;
    const wDims = scan.defs.get(conv.input![1]!)!.dims;
    if (wDims[0] !== gamma.length) continue;
    const folded = foldBatchNorm(weight, bias, {
      gamma,
      beta,
      mean,
      variance,
      epsilon: floatAttr(bn, "epsilon", 1e-5),
    });
    const base = conv.name || y;
    const wName = uniqueName(scan, `${base}/bn_folded_weight`);
    const bName = uniqueName(scan, `${base}/bn_folded_bias`);
    graph.initializer = [
      ...(graph.initializer ?? []),
      floatTensor(wName, wDims, folded.weight),
      floatTensor(bName, [gamma.length], folded.bias),
    ];
    conv.input = [conv.input![0]!, wName, bName];
    conv.output = [bn.output![0]!];
    drop.add(bn);
  }
  graph.node = (graph.node ?? []).filter((n) => !drop.has(n));
  removeUnusedInitializers(model);
  return drop.size;
}

/** A main-graph float constant's values, or null (not a constant, shadowed, not float). */
export function constFloats(scan: GraphScan, name: string | undefined): Float32Array | null {
  const def = name ? scan.defs.get(name) : undefined;
  if (def?.scope.path !== "main" || def.dataType !== DT.FLOAT || scan.ambiguous.has(def.name)) return null;
  return readFloats(def.tensor);
}

/**
 * Drops main-graph constants nothing reads any more (the weights replaced by folded or int8
 * copies): initializers, and Constant nodes (PP-OCR exports keep every weight in one).
 */
export function removeUnusedInitializers(model: ModelProto): void {
  const scan = scanModel(model);
  const graph = model.graph!;
  const used = (name: string | null | undefined) =>
    !name || scan.pinned.has(name) || (scan.uses.get(name) ?? []).length > 0;
  graph.initializer = (graph.initializer ?? []).filter((t) => used(t.name));
  graph.node = (graph.node ?? []).filter((n) => n.opType !== "Constant" || !!n.domain || used(n.output?.[0]));
}
