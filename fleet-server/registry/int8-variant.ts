import * as ort from "onnxruntime-node";
import { EdgeFleetError } from "../../shared/errors.js";
import type { QuantizationReport, ValidationReport } from "../../shared/schemas/quantization-report.js";
import type { Sample, SampleInput } from "../../shared/schemas/tensor.js";
import { jsonToRaw } from "../../shared/tensors.js";
import { type AccuracyPolicy, compareOutputs, fmt } from "../quantize/compare.js";
import { decodeModel, encodeModel } from "../quantize/onnx-model.js";
import type { QuantizeOptions } from "../quantize/plan.js";
import { type QuantizationResult, quantizeModel } from "../quantize/transform.js";
import type { BuildProgressFn } from "./build-tracker.js";
import { inspectModel } from "./onnx-inspect.js";

export type Int8Outcome =
  | { built: true; modelBytes: Uint8Array; samples: Sample[]; report: QuantizationReport }
  | { built: false; reason: string };

/**
 * Smoke-test tolerance for int8 bundles: the device compares its own int8 run with the server's.
 * Integer kernels differ across CPUs (and one activation rounding step can flip), so the fp32
 * defaults (1e-4 / 1e-3) would fail healthy devices.
 */
const INT8_SMOKE_TOLERANCE = { abs: 1e-3, rel: 1e-2 };
/** Latency measurement budget per upload, so validation never makes POST /v1/models slow. */
const LATENCY_BUDGET_MS = 400;
const LATENCY_MAX_ROUNDS = 30;

/**
 * Produces and validates the int8 variant of an uploaded model: quantize (pure transform),
 * load in onnxruntime, run fp32 and int8 on the samples and calibration inputs, compare under
 * the accuracy policy, time both. Throws only for bad operator input (calibration inputs that
 * don't match the signature); anything else about int8 becomes `built: false` with a reason,
 * because the fp32 variant is still good.
 */
export async function buildInt8Variant(args: {
  fp32Bytes: Uint8Array;
  fp32Samples: Sample[];
  calibration: SampleInput[];
  policy: AccuracyPolicy;
  options?: Partial<QuantizeOptions>;
  /** fp32 outputs of `calibration`, when the caller already recorded them (same order). */
  fp32Calibration?: Sample[];
  /** Phases `quantizing` (weights processed) and `validating-int8` (inputs run on int8). */
  onProgress?: BuildProgressFn;
}): Promise<Int8Outcome> {
  const { fp32Bytes, fp32Samples, calibration, policy, onProgress } = args;
  // Calibration inputs are checked against fp32 first: a mismatch is the operator's error.
  const fp32Calibration =
    args.fp32Calibration ?? (calibration.length > 0 ? (await inspectModel(fp32Bytes, calibration)).samples : []);
  let result: QuantizationResult;
  try {
    result = quantizeModel(decodeModel(fp32Bytes), args.options, (done, total) =>
      onProgress?.("quantizing", done, total),
    );
  } catch (err) {
    return { built: false, reason: `int8 transform failed: ${(err as Error).message}` };
  }
  if (result.report.totals.weightsQuantized === 0) {
    return {
      built: false,
      reason: "no weight qualified for int8 (all too small, computed, or in sensitive positions)",
    };
  }
  const modelBytes = encodeModel(result.model);
  const inputs: SampleInput[] = fp32Samples.map((s) => ({
    ...(s.name !== undefined ? { name: s.name } : {}),
    inputs: s.inputs,
    tolerance: INT8_SMOKE_TOLERANCE,
  }));
  let int8Samples: Sample[];
  let int8Calibration: Sample[];
  const runs = inputs.length + calibration.length;
  onProgress?.("validating-int8", 0, runs);
  try {
    int8Samples = (await inspectModel(modelBytes, inputs, (done) => onProgress?.("validating-int8", done, runs)))
      .samples;
    int8Calibration =
      calibration.length > 0
        ? (
            await inspectModel(modelBytes, calibration, (done) =>
              onProgress?.("validating-int8", inputs.length + done, runs),
            )
          ).samples
        : [];
  } catch (err) {
    return { built: false, reason: `onnxruntime cannot run the int8 model: ${(err as Error).message}` };
  }
  const cmp = compareOutputs(
    [...fp32Samples, ...fp32Calibration].map((s) => s.outputs),
    [...int8Samples, ...int8Calibration].map((s) => s.outputs),
    policy,
  );
  const sizeRatio = modelBytes.length / fp32Bytes.length;
  const latency = await measureLatency(fp32Bytes, modelBytes, fp32Samples);
  const failures = [...cmp.failures];
  if (policy.maxSizeRatio !== undefined && sizeRatio > policy.maxSizeRatio) {
    failures.push(`size ratio ${fmt(sizeRatio)} > ${policy.maxSizeRatio}`);
  }
  if (policy.maxLatencyRatio !== undefined && latency.ratio > policy.maxLatencyRatio) {
    failures.push(`latency ratio ${fmt(latency.ratio)} > ${policy.maxLatencyRatio}`);
  }
  const validation: ValidationReport = {
    passed: failures.length === 0,
    policy,
    samples: fp32Samples.length,
    calibrationInputs: calibration.length,
    outputs: cmp.outputs,
    top1Agreement: cmp.top1Agreement,
    sizeRatio: round(sizeRatio),
    latency,
    failures,
  };
  return { built: true, modelBytes, samples: int8Samples, report: { ...result.report, validation } };
}

async function measureLatency(
  fp32: Uint8Array,
  int8: Uint8Array,
  samples: Sample[],
): Promise<ValidationReport["latency"]> {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all", intraOpNumThreads: 1 };
  const sessions = await Promise.all([
    ort.InferenceSession.create(fp32, opts),
    ort.InferenceSession.create(int8, opts),
  ]);
  try {
    const feeds = samples.map((s) =>
      Object.fromEntries(
        Object.entries(s.inputs).map(([name, json]) => {
          const raw = jsonToRaw(name, json);
          return [name, new ort.Tensor(raw.type, raw.data as never, raw.dims)];
        }),
      ),
    );
    const times: [number[], number[]] = [[], []];
    for (const session of sessions) for (const f of feeds) await session.run(f); // warm-up
    const start = performance.now();
    let rounds = 0;
    // Interleaved so both variants see the same machine noise.
    while (rounds < LATENCY_MAX_ROUNDS && (rounds < 3 || performance.now() - start < LATENCY_BUDGET_MS)) {
      for (const [i, session] of sessions.entries()) {
        for (const f of feeds) {
          const t0 = performance.now();
          await session.run(f);
          times[i as 0 | 1].push(performance.now() - t0);
        }
      }
      rounds++;
    }
    const fp32Ms = median(times[0]);
    const int8Ms = median(times[1]);
    return { fp32Ms: round(fp32Ms), int8Ms: round(int8Ms), ratio: round(int8Ms / fp32Ms), runs: times[0].length };
  } catch (err) {
    throw new EdgeFleetError("INTERNAL", `latency measurement failed: ${(err as Error).message}`);
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
