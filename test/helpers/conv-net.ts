import type { onnx } from "onnx-proto";
import { buildModel, floatAttr, floatTensor, intAttr, node, randomFloats, valueInfo } from "./onnx-builder.js";

const ints = (name: string, values: number[]): onnx.IAttributeProto => ({ name, type: 7, ints: values });

/**
 * A small CNN for the static int8 tests: x [1,3,8,8] -> Conv 3x3 (conv_a) -> BatchNormalization
 * -> Relu -> Conv 1x1 to 16 channels with bias (conv_b) -> Slice (all channels, attribute form at opset 9) ->
 * GlobalAveragePool -> Flatten -> Gemm transB=1 with bias (fc) -> y [1,4]. Seeded weights.
 */
export function convNetModel(opset = 13): Uint8Array {
  const sliceAttrs = opset < 10 ? [ints("starts", [0]), ints("ends", [1000]), ints("axes", [1])] : [];
  const sliceInputs = opset < 10 ? ["b"] : ["b", "s_starts", "s_ends", "s_axes"];
  const i64 = (name: string, v: number) => ({ name, dims: [1], dataType: 7, int64Data: [v] });
  return buildModel({
    opset,
    inputs: [valueInfo("x", [1, 3, 8, 8])],
    outputs: [valueInfo("y", [1, 4])],
    initializers: [
      floatTensor("wa", [8, 3, 3, 3], randomFloats(8 * 27, 1, 0.5)),
      floatTensor(
        "gamma",
        [8],
        Float32Array.from(randomFloats(8, 2, 0.5), (v) => 1 + v),
      ),
      floatTensor("beta", [8], randomFloats(8, 3, 0.2)),
      floatTensor("mean", [8], randomFloats(8, 4, 0.3)),
      floatTensor(
        "var",
        [8],
        Float32Array.from(randomFloats(8, 5, 0.5), (v) => 1 + v),
      ),
      floatTensor("wb", [16, 8, 1, 1], randomFloats(128, 6, 0.5)),
      floatTensor("bb", [16], randomFloats(16, 7, 0.1)),
      floatTensor("wfc", [4, 16], randomFloats(64, 8, 0.5)),
      floatTensor("cfc", [4], randomFloats(4, 9, 0.1)),
      ...(opset < 10 ? [] : [i64("s_starts", 0), i64("s_ends", 1000), i64("s_axes", 1)]),
    ],
    nodes: [
      node("Conv", ["x", "wa"], ["a"], [ints("kernel_shape", [3, 3]), ints("pads", [1, 1, 1, 1])], "conv_a"),
      node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["an"], [floatAttr("epsilon", 1e-5)], "bn_a"),
      node("Relu", ["an"], ["ar"], [], "relu_a"),
      node("Conv", ["ar", "wb", "bb"], ["b"], [ints("kernel_shape", [1, 1])], "conv_b"),
      node("Slice", sliceInputs, ["bs"], sliceAttrs, "slice"),
      node("GlobalAveragePool", ["bs"], ["g"], [], "gap"),
      node("Flatten", ["g"], ["f"], [intAttr("axis", 1)], "flatten"),
      node("Gemm", ["f", "wfc", "cfc"], ["y"], [intAttr("transB", 1)], "fc"),
    ],
  });
}

/** Seeded conv-net inputs as JSON tensors. */
export function convNetInput(seed: number): { datatype: "FP32"; shape: number[]; data: number[] } {
  return { datatype: "FP32", shape: [1, 3, 8, 8], data: Array.from(randomFloats(192, 100 + seed, 1)) };
}
