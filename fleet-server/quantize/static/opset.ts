import { type GraphScan, uniqueName } from "../graph-scan.js";
import { attr, DT, defaultOpset, floatTensor, type ModelProto, num } from "../onnx-model.js";

/**
 * QuantizeLinear, QLinearConv and MatMulInteger exist from opset 10, but an opset 10 graph is
 * not enough: when a Conv stays fp32 between int8 ones, onnxruntime's own optimizer may insert
 * a Round (opset 11) and then refuses the model it produced. So models below opset 11 (PP-OCR
 * rec and cls are opset 9) are raised to 11 when every op they use means the same there: Slice
 * (starts/ends/axes) and Clip (min/max) moved attributes to inputs, rewritten here; Upsample,
 * TopK, Dropout, Resize, Pad and the others below changed in ways we do not rewrite (such a
 * model keeps its opset and gets no static build). Pure on the ModelProto.
 */
const CHANGED_BY_11 = new Set([
  "Upsample",
  "TopK",
  "Dropout",
  "Resize",
  "Pad",
  "Scatter",
  "OneHot",
  "Compress",
  "NonMaxSuppression",
  "DepthToSpace",
  "Loop",
  "If",
  "Scan",
]);
export const STATIC_OPSET = 11;

export function ensureOpset11(model: ModelProto, scan: GraphScan): { from: number; to: number } | { refused: string } {
  const from = defaultOpset(model);
  if (from === null) return { refused: "the model imports no default-domain opset" };
  if (from >= STATIC_OPSET) return { from, to: from };
  if (from < 7) return { refused: `opset ${from} is too old to raise to ${STATIC_OPSET}` };
  const blocking = scan.nodes.find(({ node }) => !node.domain && CHANGED_BY_11.has(node.opType ?? ""));
  if (blocking) {
    return {
      refused: `opset ${from} model uses ${blocking.node.opType}, whose definition changed by opset ${STATIC_OPSET}`,
    };
  }
  for (const { node, scope } of scan.nodes) {
    if (node.domain) continue;
    if (node.opType === "Clip") {
      // Clip-6: min/max attributes (absent: unbounded); Clip-11: optional inputs.
      const bound = (name: string) => {
        const a = attr(node, name);
        if (a?.f === undefined || a.f === null) return "";
        const n = uniqueName(scan, `${node.name || "Clip"}/${name}`);
        scope.graph.initializer = [...(scope.graph.initializer ?? []), floatTensor(n, [], new Float32Array([a.f]))];
        return n;
      };
      node.input = [node.input![0]!, bound("min"), bound("max")];
      node.attribute = [];
      continue;
    }
    if (node.opType !== "Slice" || from >= 10) continue;
    const ints = (name: string) => (attr(node, name)?.ints ?? []).map((v) => num(v));
    const starts = ints("starts");
    const ends = ints("ends");
    const axes = attr(node, "axes") ? ints("axes") : starts.map((_, i) => i);
    const names = (["starts", "ends", "axes"] as const).map((k) => uniqueName(scan, `${node.name || "Slice"}/${k}`));
    [starts, ends, axes].forEach((values, i) => {
      scope.graph.initializer = [...(scope.graph.initializer ?? []), int64Tensor(names[i]!, values)];
    });
    node.input = [node.input![0]!, ...names];
    node.attribute = [];
  }
  for (const imp of model.opsetImport ?? []) if (!imp.domain || imp.domain === "ai.onnx") imp.version = STATIC_OPSET;
  // IR 4 cannot carry opset 11 imports in every runtime; 6 is the IR version of ONNX 1.5 (opset 10/11).
  if (num(model.irVersion) < 6) model.irVersion = 6;
  return { from, to: STATIC_OPSET };
}

function int64Tensor(name: string, values: number[]) {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  // Exporters write "to the end" as INT64_MAX, which a JS number cannot hold: clamp to int64.
  const max = 2n ** 63n - 1n;
  values.forEach((v, i) => {
    const b = BigInt(Math.trunc(v));
    view.setBigInt64(i * 8, b > max ? max : b < -max ? -max : b, true);
  });
  return { name, dims: [values.length], dataType: DT.INT64, rawData: bytes };
}
