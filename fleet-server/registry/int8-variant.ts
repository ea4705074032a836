import * as ort from "onnxruntime-node";
import { EdgeFleetError } from "../../shared/errors.js";
import type {
  QuantizationReport,
  QuantizerReport,
  ValidationReport,
} from "../../shared/schemas/quantization-report.js";
import type { JsonTensor, Sample, SampleInput } from "../../shared/schemas/tensor.js";
import { jsonToRaw } from "../../shared/tensors.js";
import { type AccuracyPolicy, compareOutputs, fmt } from "../quantize/compare.js";
import { decodeModel, encodeModel } from "../quantize/onnx-model.js";
import type { QuantizeOptions } from "../quantize/plan.js";
import { DEFAULT_STATIC_OPTIONS, quantizeStatic, type StaticOptions } from "../quantize/static/quantize-static.js";
import { staticReport } from "../quantize/static/report.js";
import { type QuantizationResult, quantizeModel } from "../quantize/transform.js";
import type { BuildProgressFn } from "./build-tracker.js";
import { chooseInt8 } from "./int8-choice.js";
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
 * Produces and validates the int8 variant of an uploaded model. Two builds (issue 17): the
 * weight-only/dynamic transform, and static int8 calibrated on the samples and calibration
 * inputs (with its accuracy fallback); each is loaded in onnxruntime, run on the samples and
 * calibration inputs, compared with fp32 under the accuracy policy and timed against fp32 on
 * this CPU. `chooseInt8` (int8-choice.ts) picks the variant; the other is recorded under
 * `alternatives`. Throws only for bad operator input (calibration inputs that
 * don't match the signature); anything else about int8 becomes `built: false` with a reason,
 * because the fp32 variant is still good.
 */
export async function buildInt8Variant(args: {
  fp32Bytes: Uint8Array;
  fp32Samples: Sample[];
  calibration: SampleInput[];
  policy: AccuracyPolicy;
  options?: Partial<QuantizeOptions>;
  /** Static int8 tuning; false: build weight-only only (the pre-issue-17 behaviour). */
  staticOptions?: Partial<StaticOptions> | false;
  /** false: skip the weight-only build (benchmarks comparing the two kinds). */
  weights?: boolean;
  /** fp32 outputs of `calibration`, when the caller already recorded them (same order). */
  fp32Calibration?: Sample[];
  /** Phases `quantizing` (weights processed) and `validating-int8` (inputs run on int8). */
  onProgress?: BuildProgressFn;
}): Promise<Int8Outcome> {
  const { fp32Bytes, fp32Samples, calibration, policy, onProgress } = args;
  // Calibration inputs are checked against fp32 first: a mismatch is the operator's error.
  const fp32Calibration =
    args.fp32Calibration ?? (calibration.length > 0 ? (await inspectModel(fp32Bytes, calibration)).samples : []);
  const ctx: ValidationContext = { fp32Bytes, fp32Samples, calibration, fp32Calibration, policy, onProgress };
  const built: Built[] = [];
  let weightsReason: string | null = null;
  let result: QuantizationResult | null = null;
  if (args.weights === false) weightsReason = "weight-only build not requested";
  else
    try {
      result = quantizeModel(decodeModel(fp32Bytes), args.options, (done, total) =>
        onProgress?.("quantizing", done, total),
      );
    } catch (err) {
      weightsReason = `int8 transform failed: ${(err as Error).message}`;
    }
  if (result && result.report.totals.weightsQuantized === 0) {
    weightsReason = "no weight qualified for int8 (all too small, computed, or in sensitive positions)";
  } else if (result) {
    const v = await validate(ctx, encodeModel(result.model), result.report);
    if ("reason" in v) weightsReason = v.reason;
    else built.push(v);
  }
  let staticReason: string | null = null;
  if (args.staticOptions !== false) {
    const s = await buildStatic(ctx, args.staticOptions ?? {});
    if ("reason" in s) staticReason = s.reason;
    else built.push(s);
  }
  const choice = chooseInt8(
    built.map((b) => ({
      ...b,
      method: b.report.method,
      passed: b.report.validation.passed,
      sizeRatio: b.report.validation.sizeRatio,
      latencyRatio: b.report.validation.latency.ratio,
    })),
  );
  if (!choice) {
    return {
      built: false,
      reason: [weightsReason, staticReason && `static int8: ${staticReason}`].filter(Boolean).join("; "),
    };
  }
  const { chosen, others } = choice;
  const alternatives = others.map(({ candidate, reason }) => ({
    method: candidate.method,
    passed: candidate.passed,
    sizeRatio: candidate.sizeRatio,
    latencyRatio: candidate.latencyRatio,
    reason,
  }));
  const report: QuantizationReport = { ...chosen.report, ...(alternatives.length > 0 ? { alternatives } : {}) };
  return { built: true, modelBytes: chosen.modelBytes, samples: chosen.samples, report };
}

interface ValidationContext {
  fp32Bytes: Uint8Array;
  fp32Samples: Sample[];
  calibration: SampleInput[];
  fp32Calibration: Sample[];
  policy: AccuracyPolicy;
  onProgress: BuildProgressFn | undefined;
}

type Built = { modelBytes: Uint8Array; samples: Sample[]; report: QuantizationReport };

/** Runs the samples and calibration inputs through `modelBytes`: the int8 samples and the policy's verdict. */
async function judgeOutputs(
  ctx: ValidationContext,
  modelBytes: Uint8Array,
  progress = true,
): Promise<{ samples: Sample[]; cmp: ReturnType<typeof compareOutputs> }> {
  const { fp32Samples, calibration, onProgress } = ctx;
  const inputs: SampleInput[] = fp32Samples.map((s) => ({
    ...(s.name !== undefined ? { name: s.name } : {}),
    inputs: s.inputs,
    tolerance: INT8_SMOKE_TOLERANCE,
  }));
  const runs = inputs.length + calibration.length;
  const report = (offset: number) => (done: number) => progress && onProgress?.("validating-int8", offset + done, runs);
  if (progress) onProgress?.("validating-int8", 0, runs);
  const samples = (await inspectModel(modelBytes, inputs, report(0))).samples;
  const cal =
    calibration.length > 0 ? (await inspectModel(modelBytes, calibration, report(inputs.length))).samples : [];
  const cmp = compareOutputs(
    [...fp32Samples, ...ctx.fp32Calibration].map((s) => s.outputs),
    [...samples, ...cal].map((s) => s.outputs),
    ctx.policy,
  );
  return { samples, cmp };
}

/** Validates one int8 build: accuracy under the policy, size and latency against fp32. */
async function validate(
  ctx: ValidationContext,
  modelBytes: Uint8Array,
  quantizer: QuantizerReport,
): Promise<Built | { reason: string }> {
  const { fp32Bytes, fp32Samples, policy } = ctx;
  let judged: Awaited<ReturnType<typeof judgeOutputs>>;
  try {
    judged = await judgeOutputs(ctx, modelBytes);
  } catch (err) {
    return { reason: `onnxruntime cannot run the int8 model: ${(err as Error).message}` };
  }
  const { samples, cmp } = judged;
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
    calibrationInputs: ctx.calibration.length,
    outputs: cmp.outputs,
    top1Agreement: cmp.top1Agreement,
    sizeRatio: round(sizeRatio),
    latency,
    failures,
  };
  return { modelBytes, samples, report: { ...quantizer, validation } };
}

/**
 * Static int8 (fleet-server/quantize/static/): calibrated on the samples' and calibration
 * inputs, judged by the same policy on each fallback attempt, then validated like weight-only.
 */
async function buildStatic(
  ctx: ValidationContext,
  options: Partial<StaticOptions>,
): Promise<Built | { reason: string }> {
  const opts = { ...DEFAULT_STATIC_OPTIONS, ...options };
  const feeds = [...ctx.fp32Samples.map((s) => s.inputs), ...ctx.calibration.map((c) => c.inputs)].map(toFeeds);
  const judge = async (bytes: Uint8Array) => (await judgeOutputs(ctx, bytes, false)).cmp.failures;
  let outcome: Awaited<ReturnType<typeof quantizeStatic>>;
  try {
    outcome = await quantizeStatic(ctx.fp32Bytes, feeds, judge, opts);
  } catch (err) {
    return { reason: `transform failed: ${(err as Error).message}` };
  }
  if ("skipped" in outcome) return { reason: outcome.skipped };
  const report = staticReport(outcome, opts, feeds.length, {
    before: ctx.fp32Bytes.length,
    after: outcome.bytes.length,
  });
  return validate(ctx, outcome.bytes, report);
}

function toFeeds(inputs: Record<string, JsonTensor>): Record<string, ort.Tensor> {
  return Object.fromEntries(
    Object.entries(inputs).map(([name, json]) => {
      const raw = jsonToRaw(name, json);
      return [name, new ort.Tensor(raw.type, raw.data as never, raw.dims)];
    }),
  );
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
    const feeds = samples.map((s) => toFeeds(s.inputs));
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
