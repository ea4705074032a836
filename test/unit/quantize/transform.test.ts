import { describe, expect, it } from "vitest";
import { decodeModel, encodeModel, type ModelProto, readFloats } from "../../../fleet-server/quantize/onnx-model.js";
import { quantizeModel } from "../../../fleet-server/quantize/transform.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import {
  buildModel,
  constantNode,
  floatTensor,
  graphAttr,
  mlpModel,
  node,
  opTypes,
  randomFloats,
  valueInfo,
} from "../../helpers/onnx-builder.js";

const q = (bytes: Uint8Array, opts = {}) => quantizeModel(decodeModel(bytes), opts);
const initNames = (m: ModelProto) => (m.graph?.initializer ?? []).map((t) => t.name);

describe("int8 transform", () => {
  it("rewrites MatMul and Gemm weights into the dynamic integer chain", () => {
    const { model, report } = q(mlpModel());
    const ops = opTypes(model);
    expect(ops.filter((o) => o === "DynamicQuantizeLinear")).toHaveLength(3);
    expect(ops.filter((o) => o === "MatMulInteger")).toHaveLength(3);
    expect(ops).not.toContain("MatMul");
    expect(ops).not.toContain("Gemm");
    expect(report.totals).toMatchObject({ weightsQuantized: 3, dynamicNodes: 3, weightOnlyNodes: 0 });
    // Float weights are gone; W3 (Gemm transB=1) is stored transposed as [K, N].
    expect(initNames(model)).not.toContain("W1");
    const w3 = model.graph!.initializer!.find((t) => t.name === "W3_kn_quantized_u8s8")!;
    expect(w3.dims!.map(Number)).toEqual([256, 32]);
    expect(w3.dataType).toBe(3);
    // Gemm's beta=2 is folded into a new bias, alpha=0.5 into the column scales.
    const bias = model.graph!.initializer!.find((t) => t.name?.endsWith("bias_beta"))!;
    expect(readFloats(bias)[0]).toBeCloseTo(2 * randomFloats(32, 5, 0.5)[0]!, 6);
    expect(report.nodes.every((n) => n.action === "dynamic-int8")).toBe(true);
  });

  it("quantizes a weight shared by two MatMuls once", () => {
    const bytes = buildModel({
      opset: 13,
      inputs: [valueInfo("a", [1, 128]), valueInfo("b", [1, 128])],
      outputs: [valueInfo("ya", [1, 64]), valueInfo("yb", [1, 64])],
      initializers: [floatTensor("W", [128, 64], randomFloats(128 * 64, 7))],
      nodes: [node("MatMul", ["a", "W"], ["ya"]), node("MatMul", ["b", "W"], ["yb"])],
    });
    const { model, report } = q(bytes);
    expect(model.graph!.initializer!.filter((t) => t.dataType === 3)).toHaveLength(1);
    const mmi = model.graph!.node!.filter((n) => n.opType === "MatMulInteger");
    expect(mmi.map((n) => n.input![1])).toEqual(["W_quantized_u8s8", "W_quantized_u8s8"]);
    expect(report.weights).toHaveLength(1);
    expect(report.nodes.map((n) => n.action)).toEqual(["dynamic-int8", "dynamic-int8"]);
  });

  it("replaces a Constant-node weight in place with int8 storage and a per-axis DequantizeLinear", () => {
    const bytes = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 8, 16, 16])],
      outputs: [valueInfo("y", [1, 16, 16, 16])],
      nodes: [
        node("Relu", ["x"], ["r"]),
        constantNode("cw", [16, 8, 3, 3], randomFloats(16 * 8 * 9, 9)),
        node("Conv", ["r", "cw"], ["y"], [{ name: "pads", type: 7, ints: [1, 1, 1, 1] }]),
      ],
    });
    const { model, report } = q(bytes);
    const ops = model.graph!.node!.map((n) => n.opType);
    expect(ops).toEqual(["Relu", "DequantizeLinear", "Conv"]);
    const dq = model.graph!.node![1]!;
    expect(dq.output).toEqual(["cw"]);
    expect(Number(dq.attribute!.find((a) => a.name === "axis")!.i)).toBe(0);
    const scale = model.graph!.initializer!.find((t) => t.name === "cw_scale")!;
    expect(scale.dims!.map(Number)).toEqual([16]);
    expect(report.weightOnlyEncoding).toBe("dequantize-linear-per-axis");
    expect(report.nodes).toEqual([{ node: "Conv_y", op: "Conv", action: "weight-only-int8", weight: "cw" }]);
  });

  it("uses Cast*Mul per-channel storage in an opset-9 model (no DequantizeLinear there) and keeps the opset", () => {
    const bytes = buildModel({
      opset: 9,
      inputs: [valueInfo("x", [1, 64])],
      outputs: [valueInfo("y", [1, 32])],
      initializers: [floatTensor("W", [64, 32], randomFloats(64 * 32, 11))],
      nodes: [node("MatMul", ["x", "W"], ["y"])],
    });
    const { model, report } = q(bytes);
    expect(opTypes(model)).toEqual(["Cast", "Mul", "MatMul"]);
    expect(Number(model.opsetImport![0]!.version)).toBe(9);
    const scale = model.graph!.initializer!.find((t) => t.name === "W_scale")!;
    // MatMul B [K, N]: one scale per output column, shaped to broadcast.
    expect(scale.dims!.map(Number)).toEqual([1, 32]);
    expect(report.weightOnlyEncoding).toBe("cast-mul-per-channel");
    expect(report.nodes[0]).toMatchObject({ op: "MatMul", action: "weight-only-int8" });
  });

  it("handles weights read inside an If subgraph: storage stays in the defining scope", () => {
    const branch = (name: string, op: "MatMul" | "Identity") => ({
      name,
      node: op === "MatMul" ? [node("MatMul", ["x", "W"], [`${name}_y`])] : [node("Identity", ["x"], [`${name}_y`])],
      output: [valueInfo(`${name}_y`, [1, 64])],
    });
    const bytes = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 64]), valueInfo("c", [], 9)],
      outputs: [valueInfo("y", [1, 64])],
      initializers: [floatTensor("W", [64, 64], randomFloats(64 * 64, 13))],
      nodes: [
        node(
          "If",
          ["c"],
          ["y"],
          [graphAttr("then_branch", branch("then", "MatMul")), graphAttr("else_branch", branch("else", "Identity"))],
        ),
      ],
    });
    const { model, report } = q(bytes);
    expect(initNames(model)).toContain("W_quantized_u8s8");
    const then = model.graph!.node![0]!.attribute!.find((a) => a.name === "then_branch")!.g!;
    expect(then.node!.map((n) => n.opType)).toEqual(["DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Mul"]);
    expect(then.node!.at(-1)!.output).toEqual(["then_y"]);
    expect(report.nodes[0]).toMatchObject({ action: "dynamic-int8", scope: "main/If_y.then_branch" });
  });

  it("skips small, pinned and exactly-read weights, saying why", () => {
    const bytes = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 64]), valueInfo("P", [64, 64])],
      outputs: [valueInfo("y", [1, 64]), valueInfo("z", [64, 64])],
      initializers: [
        floatTensor("P", [64, 64], randomFloats(64 * 64, 1)),
        floatTensor("S", [4, 4], randomFloats(16, 2)),
        floatTensor("E", [64, 64], randomFloats(64 * 64, 3)),
      ],
      nodes: [
        node("MatMul", ["x", "P"], ["a"]),
        node("MatMul", ["a", "S"], ["b"]),
        node("MatMul", ["x", "E"], ["c"]),
        node("Add", ["c", "b"], ["y"]),
        node("Mul", ["E", "P"], ["z"]),
      ],
    });
    const { report } = q(bytes, { keepFp32: [] });
    expect(report.totals.weightsQuantized).toBe(0);
    const reasons = report.nodes.map((n) => `${n.weight}: ${n.reason}`);
    expect(reasons.find((r) => r.startsWith("P:"))).toContain("graph input");
    expect(reasons.find((r) => r.startsWith("S:"))).toContain("too small");
    expect(reasons.find((r) => r.startsWith("E:"))).toContain("Mul input 0");
  });

  it("survives an encode/decode round trip", () => {
    const { model } = q(mlpModel());
    expect(opTypes(decodeModel(encodeModel(model)))).toEqual(opTypes(model));
  });
});

describe("decoding uploads", () => {
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return [(err as EdgeFleetError).code, ((err as EdgeFleetError).details as { reason: string }).reason];
    }
    return null;
  };
  it("refuses non-ONNX, truncated and external-data files precisely", () => {
    expect(code(() => decodeModel(new Uint8Array()))).toEqual(["MODEL_LOAD_FAILED", "empty"]);
    expect(code(() => decodeModel(Buffer.from("this is not an onnx model")))).toEqual([
      "MODEL_LOAD_FAILED",
      "not-onnx",
    ]);
    const full = mlpModel();
    expect(code(() => decodeModel(full.subarray(0, full.length - 1000)))).toEqual(["MODEL_LOAD_FAILED", "truncated"]);
    const ext = decodeModel(full);
    ext.graph!.initializer![0] = {
      name: "W1",
      dims: [64, 256],
      dataType: 1,
      dataLocation: 1,
      externalData: [{ key: "location", value: "weights.bin" }],
    };
    const err = (() => {
      try {
        decodeModel(encodeModel(ext));
      } catch (e) {
        return e as EdgeFleetError;
      }
    })();
    expect(err).toBeInstanceOf(EdgeFleetError);
    expect(err!.message).toContain("W1 references external data (weights.bin)");
  });
});
