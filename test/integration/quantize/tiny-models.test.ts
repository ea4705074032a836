import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { decodeModel, encodeModel } from "../../../fleet-server/quantize/onnx-model.js";
import { quantizePerChannel } from "../../../fleet-server/quantize/quant-math.js";
import { quantizeModel } from "../../../fleet-server/quantize/transform.js";
import {
  buildModel,
  decode,
  floatTensor,
  graphAttr,
  intAttr,
  mlpModel,
  node,
  opTypes,
  randomFloats,
  valueInfo,
} from "../../helpers/onnx-builder.js";

const dir = mkdtempSync(join(tmpdir(), "quantize-it-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  opts: ort.InferenceSession.SessionOptions = {},
) {
  const s = await ort.InferenceSession.create(bytes, opts);
  try {
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("tiny models through the int8 transform, in onnxruntime", () => {
  it("MatMul-heavy model: fused dynamic path, integer ops in the graph, outputs within tolerance", async () => {
    const fp32 = mlpModel();
    const { model } = quantizeModel(decodeModel(fp32));
    const int8 = encodeModel(model);
    expect(opTypes(decode(int8))).toEqual(expect.arrayContaining(["DynamicQuantizeLinear", "MatMulInteger"]));
    const x = new ort.Tensor("float32", randomFloats(4 * 64, 99), [4, 64]);
    const optimized = join(dir, "mlp-int8-optimized.onnx");
    const [ref, got] = await Promise.all([
      run(fp32, { x }),
      run(int8, { x }, { graphOptimizationLevel: "extended", optimizedModelFilePath: optimized }),
    ]);
    const range = Math.max(...ref.y!.map(Math.abs));
    expect(maxAbs(ref.y!, got.y!) / range).toBeLessThan(0.03);
    // onnxruntime recognises the chain and fuses it into its integer kernel.
    expect(opTypes(decode(readFileSync(optimized)))).toContain("DynamicQuantizeMatMul");
  });

  it("per-channel int8 values are bit-identical to onnxruntime's QuantizeLinear with the same scales", async () => {
    const w = randomFloats(16 * 40, 21, 3);
    const cq = quantizePerChannel(w, [16, 40], 0);
    const qlModel = buildModel({
      opset: 13,
      inputs: [valueInfo("w", [16, 40])],
      outputs: [valueInfo("q", [16, 40], 3)],
      initializers: [
        floatTensor("s", [16], cq.scales),
        { name: "zp", dims: [16], dataType: 3, rawData: new Uint8Array(cq.zeroPoints.buffer) },
      ],
      nodes: [node("QuantizeLinear", ["w", "s", "zp"], ["q"], [intAttr("axis", 0)])],
    });
    const out = await ort.InferenceSession.create(qlModel);
    const q = (await out.run({ w: new ort.Tensor("float32", w, [16, 40]) })).q!.data as Int8Array;
    expect([...q]).toEqual([...cq.q]);
  });

  it("opset-9 model (Cast*Mul storage) and If-subgraph model run and match fp32", async () => {
    const op9 = buildModel({
      opset: 9,
      inputs: [valueInfo("x", [1, 8, 12, 12])],
      outputs: [valueInfo("y", [1, 32, 12, 12])],
      initializers: [floatTensor("cw", [32, 8, 3, 3], randomFloats(32 * 8 * 9, 5, 0.3))],
      nodes: [node("Conv", ["x", "cw"], ["y"], [{ name: "pads", type: 7, ints: [1, 1, 1, 1] }])],
    });
    const x = new ort.Tensor("float32", randomFloats(8 * 144, 6), [1, 8, 12, 12]);
    const a = await run(op9, { x });
    const b = await run(encodeModel(quantizeModel(decodeModel(op9)).model), { x });
    expect(maxAbs(a.y!, b.y!) / Math.max(...a.y!.map(Math.abs))).toBeLessThan(0.02);

    const branch = (name: string, withWeight: boolean) => ({
      name,
      node: withWeight ? [node("MatMul", ["v", "W"], [`${name}_y`])] : [node("Identity", ["v"], [`${name}_y`])],
      output: [valueInfo(`${name}_y`, [1, 64])],
    });
    const ifModel = buildModel({
      opset: 13,
      inputs: [valueInfo("v", [1, 64]), valueInfo("c", [], 9)],
      outputs: [valueInfo("y", [1, 64])],
      initializers: [floatTensor("W", [64, 64], randomFloats(64 * 64, 8, 0.2))],
      nodes: [
        node(
          "If",
          ["c"],
          ["y"],
          [graphAttr("then_branch", branch("t", true)), graphAttr("else_branch", branch("e", false))],
        ),
      ],
    });
    const v = new ort.Tensor("float32", randomFloats(64, 9), [1, 64]);
    const int8 = encodeModel(quantizeModel(decodeModel(ifModel)).model);
    for (const cond of [true, false]) {
      const c = new ort.Tensor("bool", [cond], []);
      const [r, g] = await Promise.all([run(ifModel, { v, c }), run(int8, { v, c })]);
      expect(maxAbs(r.y!, g.y!) / Math.max(...r.y!.map(Math.abs))).toBeLessThan(0.03);
    }
  });
});
