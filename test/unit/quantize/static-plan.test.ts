import { describe, expect, it } from "vitest";
import { scanModel } from "../../../fleet-server/quantize/graph-scan.js";
import { decodeModel, readFloats } from "../../../fleet-server/quantize/onnx-model.js";
import { foldConvBatchNorms } from "../../../fleet-server/quantize/static/bn-fold.js";
import { ensureOpset11 } from "../../../fleet-server/quantize/static/opset.js";
import { planStatic, sensitivityOrder, smallestPassing } from "../../../fleet-server/quantize/static/plan.js";
import { convNetModel } from "../../helpers/conv-net.js";
import { buildModel, floatTensor, mlpModel, node, randomFloats, valueInfo } from "../../helpers/onnx-builder.js";

describe("static int8 planner", () => {
  it("targets Convs and the Gemm, fuses the Relu a folded Conv feeds, calibrates inputs and Conv outputs", () => {
    const model = decodeModel(convNetModel());
    expect(foldConvBatchNorms(model)).toBe(1);
    const plan = planStatic(scanModel(model), new Set());
    expect(plan.targets.map((t) => [t.label, t.op, t.fusedRelu?.name ?? null])).toEqual([
      ["conv_a", "Conv", "relu_a"],
      ["conv_b", "Conv", null],
      ["fc", "Gemm", null],
    ]);
    expect(plan.targets[0]!.output).toBe("ar");
    expect(plan.targets[2]!.transposeWeight).toBe(true);
    expect(plan.calibrate).toEqual(["x", "ar", "b", "f"]);
  });

  it("keeps requested nodes and activation-by-activation MatMuls in fp32, with reasons", () => {
    const model = decodeModel(
      buildModel({
        opset: 13,
        inputs: [valueInfo("x", [1, 16]), valueInfo("z", [16, 16])],
        outputs: [valueInfo("y", [1, 16])],
        initializers: [floatTensor("W", [16, 16], randomFloats(256, 1))],
        nodes: [node("MatMul", ["x", "W"], ["h"], [], "mm_w"), node("MatMul", ["h", "z"], ["y"], [], "mm_act")],
      }),
    );
    const scan = scanModel(model);
    expect(planStatic(scan, new Set()).targets.map((t) => t.label)).toEqual(["mm_w"]);
    const kept = planStatic(scan, new Set(["mm_w"]));
    expect(kept.targets).toEqual([]);
    expect(kept.decisions.map((d) => [d.node, d.action, d.reason?.slice(0, 12)])).toEqual([
      ["mm_w", "kept-fp32", "kept in fp32"],
      ["mm_act", "kept-fp32", "the weight i"],
    ]);
  });

  it("keeps grouped (depthwise) Convs in fp32 unless asked", () => {
    const model = decodeModel(
      buildModel({
        opset: 13,
        inputs: [valueInfo("x", [1, 8, 4, 4])],
        outputs: [valueInfo("y", [1, 8, 4, 4])],
        initializers: [floatTensor("w", [8, 1, 3, 3], randomFloats(72, 1))],
        nodes: [
          node(
            "Conv",
            ["x", "w"],
            ["y"],
            [
              { name: "group", type: 2, i: 8 },
              { name: "pads", type: 7, ints: [1, 1, 1, 1] },
            ],
            "dw",
          ),
        ],
      }),
    );
    const scan = scanModel(model);
    expect(planStatic(scan, new Set()).decisions[0]).toMatchObject({ node: "dw", action: "kept-fp32" });
    expect(planStatic(scan, new Set(), { depthwise: true }).targets.map((t) => t.label)).toEqual(["dw"]);
  });

  it("leaves a Gemm with alpha/beta to fp32 (not a plain x·W + C)", () => {
    const plan = planStatic(scanModel(decodeModel(mlpModel())), new Set());
    const gemm = plan.decisions.find((d) => d.op === "Gemm")!;
    expect(gemm.action).toBe("kept-fp32");
  });
});

describe("opset 9 -> 11 for static int8", () => {
  it("moves Slice's starts/ends/axes attributes to int64 inputs and raises the import to 11", () => {
    const model = decodeModel(convNetModel(9));
    expect(ensureOpset11(model, scanModel(model))).toEqual({ from: 9, to: 11 });
    const slice = model.graph!.node!.find((n) => n.opType === "Slice")!;
    expect(slice.attribute).toEqual([]);
    expect(slice.input).toHaveLength(4);
    const axes = model.graph!.initializer!.find((t) => t.name === slice.input![3])!;
    expect(axes.dataType).toBe(7);
    expect(new DataView(axes.rawData!.buffer, axes.rawData!.byteOffset).getBigInt64(0, true)).toBe(1n);
    expect(Number(model.opsetImport![0]!.version)).toBe(11);
  });

  it("moves Clip's min/max attributes to inputs (an absent bound stays an empty input)", () => {
    const model = decodeModel(
      buildModel({
        opset: 9,
        inputs: [valueInfo("x", [1, 4])],
        outputs: [valueInfo("y", [1, 4])],
        nodes: [node("Clip", ["x"], ["y"], [{ name: "max", type: 1, f: 6 }], "clip")],
      }),
    );
    ensureOpset11(model, scanModel(model));
    const clip = model.graph!.node![0]!;
    expect(clip.attribute).toEqual([]);
    expect(clip.input).toEqual(["x", "", "clip/max"]);
    expect(readFloats(model.graph!.initializer!.find((t) => t.name === "clip/max")!)[0]).toBe(6);
  });

  it("refuses an opset 9 model with an op whose meaning changed by 11", () => {
    const model = decodeModel(
      buildModel({
        opset: 9,
        inputs: [valueInfo("x", [1, 4])],
        outputs: [valueInfo("y", [1, 4])],
        nodes: [node("Dropout", ["x"], ["y"])],
      }),
    );
    expect(ensureOpset11(model, scanModel(model))).toEqual({
      refused: "opset 9 model uses Dropout, whose definition changed by opset 11",
    });
  });
});

describe("accuracy fallback planner", () => {
  it("orders nodes most sensitive first, ties by name", () => {
    expect(
      sensitivityOrder([
        { label: "b", relError: 0.1 },
        { label: "a", relError: 0.1 },
        { label: "c", relError: 0.9 },
      ]),
    ).toEqual(["c", "a", "b"]);
  });

  it("finds the fewest nodes to keep with a logarithmic number of judged builds", async () => {
    const probed: number[] = [];
    const k = await smallestPassing(1, 60, async (n) => {
      probed.push(n);
      return n >= 13;
    });
    expect(k).toBe(13);
    expect(probed.length).toBeLessThanOrEqual(6);
    expect(probed).not.toContain(60); // keeping everything is never built
    const none = await smallestPassing(1, 8, async () => false);
    expect(none).toBe(8);
  });
});
