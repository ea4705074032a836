import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { AccuracyPolicySchema, compareOutputs } from "../../../fleet-server/quantize/compare.js";
import { decodeModel } from "../../../fleet-server/quantize/onnx-model.js";
import { type Feeds, quantizeStatic } from "../../../fleet-server/quantize/static/quantize-static.js";
import { buildInt8Variant } from "../../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../../fleet-server/registry/onnx-inspect.js";
import { realModels } from "../../../scripts/bench/quantize.js";
import { canonicalJson } from "../../../shared/canonical-json.js";
import { QuantizationReportSchema } from "../../../shared/schemas/quantization-report.js";
import type { SampleInput } from "../../../shared/schemas/tensor.js";
import { jsonToRaw } from "../../../shared/tensors.js";
import { convNetInput, convNetModel } from "../../helpers/conv-net.js";

const policy = AccuracyPolicySchema.parse({});
const ops = (bytes: Uint8Array) => (decodeModel(bytes).graph!.node ?? []).map((n) => n.opType);
const feedsOf = (samples: SampleInput[]): Feeds[] =>
  samples.map((s) =>
    Object.fromEntries(
      Object.entries(s.inputs).map(([k, t]) => {
        const r = jsonToRaw(k, t);
        return [k, new ort.Tensor(r.type, r.data as never, r.dims)];
      }),
    ),
  );

/** A judge like the registry's: fp32 vs candidate on the samples under the default policy. */
async function policyJudge(fp32Bytes: Uint8Array, samples: SampleInput[]) {
  const ref = (await inspectModel(fp32Bytes, samples)).samples.map((s) => s.outputs);
  return async (bytes: Uint8Array) =>
    compareOutputs(
      ref,
      (await inspectModel(bytes, samples)).samples.map((s) => s.outputs),
      policy,
    ).failures;
}

const convSamples: SampleInput[] = [1, 2, 3, 4].map((s) => ({ name: `img-${s}`, inputs: { x: convNetInput(s) } }));

describe("static int8 in real onnxruntime", () => {
  it("openWakeWord (npm): Gemms become static MatMulInteger, within the accuracy policy", async () => {
    const m = realModels().find((x) => x.id === "openwakeword-hello-deepa")!;
    const fp32Bytes = await readFile(m.path);
    const fp32 = await inspectModel(fp32Bytes, m.samples);
    const out = await buildInt8Variant({ fp32Bytes, fp32Samples: fp32.samples, calibration: [], policy });
    if (!out.built) throw new Error(out.reason);
    // Both builds are made; which one is the variant depends on this CPU's timing, so find the static one.
    const report = out.report.method === "int8-static" ? out.report : null;
    const alt = out.report.alternatives ?? [];
    expect(report !== null || alt.some((a) => a.method === "int8-static")).toBe(true);
    const stored = QuantizationReportSchema.safeParse(JSON.parse(canonicalJson(out.report)));
    expect(stored.error?.issues ?? []).toEqual([]);
    const judge = await policyJudge(fp32Bytes, m.samples);
    const s = await quantizeStatic(fp32Bytes, feedsOf(m.samples), judge);
    if ("skipped" in s) throw new Error(s.skipped);
    expect(s.passed).toBe(true);
    expect(s.stats.matmulNodes).toBeGreaterThanOrEqual(2);
    expect(ops(s.bytes)).toContain("MatMulInteger");
    expect(ops(s.bytes)).not.toContain("DynamicQuantizeLinear");
    expect(await judge(s.bytes)).toEqual([]);
  });

  it("conv net at opset 9: raised to 11, BN folded, Relu fused, QLinearConv, within the policy", async () => {
    const fp32Bytes = convNetModel(9);
    const s = await quantizeStatic(fp32Bytes, feedsOf(convSamples), await policyJudge(fp32Bytes, convSamples), {
      calibration: "minmax",
    });
    if ("skipped" in s) throw new Error(s.skipped);
    expect(s.passed).toBe(true);
    expect(s.opset).toEqual({ from: 9, to: 11 });
    expect(s.bnFolded).toBe(1);
    expect(s.stats).toMatchObject({ convNodes: 2, matmulNodes: 1, fusedRelus: 1 });
    const o = ops(s.bytes);
    expect(o.filter((x) => x === "QLinearConv")).toHaveLength(2);
    expect(o).not.toContain("BatchNormalization");
    expect(o).not.toContain("Relu");
    // conv_a feeds conv_b in uint8: one QuantizeLinear at the input, none in between.
    expect(o.filter((x) => x === "QuantizeLinear")).toHaveLength(2); // x, and f for the Gemm
  });

  it("accuracy fallback: keeps the fewest most sensitive nodes in fp32 until the judge passes", async () => {
    const fp32Bytes = convNetModel(13);
    const judged: string[][] = [];
    // A strict judge: passes only while conv_b runs in fp32 (stands in for a sensitive layer).
    const judge = async (bytes: Uint8Array) => {
      const convB = decodeModel(bytes).graph!.node!.some((n) => n.name === "conv_b" && n.opType === "Conv");
      judged.push(ops(bytes).filter((x) => x === "QLinearConv" || x === "MatMulInteger") as string[]);
      return convB ? [] : ["conv_b is quantized"];
    };
    const s = await quantizeStatic(fp32Bytes, feedsOf(convSamples), judge);
    if ("skipped" in s) throw new Error(s.skipped);
    expect(s.passed).toBe(true);
    expect(s.attempts[0]!.failures).toEqual(["conv_b is quantized"]);
    const last = s.attempts.at(-1)!;
    expect(last.keptFp32).toContain("conv_b");
    expect(last.failures).toEqual([]);
    expect(s.decisions.find((d) => d.node === "conv_b")!.action).toBe("kept-fp32");
    // Something is still int8, or the variant would be pointless.
    expect(s.stats.convNodes + s.stats.matmulNodes).toBeGreaterThan(0);
  });
});
