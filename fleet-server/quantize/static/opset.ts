import { type GraphScan, uniqueName } from "../graph-scan.js";
import { attr, DT, defaultOpset, type ModelProto, num } from "../onnx-model.js";

/**
 * QuantizeLinear, QLinearConv and MatMulInteger exist from opset 10. Models exported at opset 9
 * (PP-OCR rec and cls) are raised to 10 when every op they use means the same in both: of the
 * ops whose definition changed in opset 10, Slice moved starts/ends/axes from attributes to
 * inputs (rewritten here), and Upsample, TopK and Dropout changed in ways we do not rewrite
 * (such a model keeps its opset and gets no static variant). Pure on the ModelProto.
 */
const CHANGED_IN_10 = new Set(["Upsample", "TopK", "Dropout"]);

export function ensureOpset10(model: ModelProto, scan: GraphScan): { from: number; to: number } | { refused: string } {
  const from = defaultOpset(model);
  if (from === null) return { refused: "the model imports no default-domain opset" };
  if (from >= 10) return { from, to: from };
  if (from < 7) return { refused: `opset ${from} is too old to raise to 10` };
  const blocking = scan.nodes.find(({ node }) => !node.domain && CHANGED_IN_10.has(node.opType ?? ""));
  if (blocking)
    return { refused: `opset ${from} model uses ${blocking.node.opType}, whose definition changed in opset 10` };
  for (const { node, scope } of scan.nodes) {
    if (node.opType !== "Slice" || node.domain) continue;
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
  for (const imp of model.opsetImport ?? []) if (!imp.domain || imp.domain === "ai.onnx") imp.version = 10;
  return { from, to: 10 };
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
