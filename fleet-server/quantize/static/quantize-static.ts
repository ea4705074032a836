import * as ort from "onnxruntime-node";
import { scanModel } from "../graph-scan.js";
import { DT, decodeModel, encodeModel, type ModelProto } from "../onnx-model.js";
import { foldConvBatchNorms } from "./bn-fold.js";
import {
  type CalibrationMethod,
  calibratedRange,
  emptyStats,
  observe,
  type RangeStats,
  type U8Params,
  u8Params,
} from "./calibration.js";
import { ensureOpset11 } from "./opset.js";
import {
  type NodeError,
  planStatic,
  type StaticDecision,
  type StaticPlan,
  sensitivityOrder,
  smallestPassing,
} from "./plan.js";
import { applyStatic, type StaticTransformStats, shadowName } from "./transform.js";

export type Feeds = Record<string, ort.Tensor>;

export interface StaticOptions {
  /**
   * percentile (default): int8 nodes left after the fallback, percentile / entropy / MinMax —
   * cls 41 / 31 / 41, rec 8 / 7 / 4, det 8 / 10 / 8 (benchmarks.md "Static int8").
   */
  calibration: CalibrationMethod;
  /** For `percentile`: the share of values kept inside the range, both tails clipped. */
  percentile: number;
  /** Node names the operator wants left in fp32. */
  keepFp32Nodes: string[];
  /** Rebuilds with more nodes in fp32 after an accuracy failure (0: no fallback). */
  maxFallbacks: number;
  /** Quantize grouped/depthwise Convs too (default false: slower and less accurate in int8 here). */
  depthwise: boolean;
}

export const DEFAULT_STATIC_OPTIONS: StaticOptions = {
  calibration: "percentile",
  percentile: 99.99,
  keepFp32Nodes: [],
  maxFallbacks: 8,
  depthwise: false,
};

export interface StaticAttempt {
  keptFp32: string[];
  failures: string[];
}

export interface StaticOutcome {
  bytes: Uint8Array;
  stats: StaticTransformStats;
  decisions: StaticDecision[];
  opset: { from: number; to: number };
  bnFolded: number;
  attempts: StaticAttempt[];
  /** True when the last attempt passed the judge. */
  passed: boolean;
}

/** The caller's accuracy verdict on a candidate model: the policy failures (empty: publishable). */
export type Judge = (bytes: Uint8Array) => Promise<string[]>;

const QUIET: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3, intraOpNumThreads: 1 };

/**
 * Static int8 with calibration and automatic fp32 fallback. Prepares the fp32 graph (opset 10,
 * BatchNorm folded), measures activation ranges on `calibration` feeds, rewrites the targets,
 * and asks `judge` whether the result meets the accuracy policy. On failure it measures every
 * quantized node's own error in one shadow run, ranks the nodes (plan.ts `sensitivityOrder`) and
 * binary-searches the fewest most sensitive ones to keep in fp32 (`smallestPassing`, at most
 * `maxFallbacks` more judged builds). `{ skipped }` says why a model gets no static build.
 */
export async function quantizeStatic(
  fp32Bytes: Uint8Array,
  calibration: Feeds[],
  judge: Judge,
  options: Partial<StaticOptions> = {},
): Promise<StaticOutcome | { skipped: string }> {
  const opts = { ...DEFAULT_STATIC_OPTIONS, ...options };
  if (calibration.length === 0) return { skipped: "no samples or calibration inputs to calibrate on" };
  const prepared = decodeModel(fp32Bytes);
  const opset = ensureOpset11(prepared, scanModel(prepared));
  if ("refused" in opset) return { skipped: opset.refused };
  const bnFolded = foldConvBatchNorms(prepared);
  const preparedBytes = encodeModel(prepared);
  const full = planStatic(scanModel(prepared), new Set(), { depthwise: opts.depthwise });
  if (full.targets.length === 0) return { skipped: "no Conv, MatMul or Gemm with a constant weight" };
  const observed = [...new Set([...full.calibrate, ...full.targets.map((t) => t.output)])];
  const fp32 = await runExposed(preparedBytes, observed, calibration);
  const ranges = new Map<string, RangeStats>();
  for (const run of fp32) {
    for (const name of full.calibrate)
      observe(ranges.get(name) ?? ranges.set(name, emptyStats()).get(name)!, run.get(name)!);
  }
  const params = new Map(
    [...ranges].map(([name, s]) => {
      const { lo, hi } = calibratedRange(s, opts.calibration, opts.percentile);
      return [name, u8Params(lo, hi)];
    }),
  );
  const operatorKeep = new Set(opts.keepFp32Nodes);
  const attempts: StaticAttempt[] = [];
  const build = (keep: ReadonlySet<string>) => {
    const model = decodeModel(preparedBytes);
    const plan = planStatic(scanModel(model), keep, { depthwise: opts.depthwise });
    const stats = applyStatic(model, scanModel(model), plan.targets, params);
    return { bytes: encodeModel(model), stats, plan };
  };
  const attempt = async (keep: ReadonlySet<string>) => {
    const candidate = build(keep);
    const failures =
      candidate.plan.targets.length === 0 ? ["every node is kept in fp32"] : await judge(candidate.bytes);
    attempts.push({ keptFp32: [...keep].sort(), failures });
    return { ...candidate, failures };
  };
  const finish = (c: Awaited<ReturnType<typeof attempt>>): StaticOutcome => ({
    bytes: c.bytes,
    stats: c.stats,
    decisions: c.plan.decisions,
    opset,
    bnFolded,
    attempts,
    passed: c.failures.length === 0,
  });
  const first = await attempt(operatorKeep);
  if (first.failures.length === 0 || opts.maxFallbacks === 0) return finish(first);
  // Fallback: rank the nodes by their own int8 error, then find the fewest most-sensitive
  // nodes to keep in fp32 for the policy to pass (binary search, each probe judged in full).
  const order = sensitivityOrder(await nodeErrors(preparedBytes, first.plan, params, fp32, calibration));
  const keepFirst = (k: number) => new Set([...operatorKeep, ...order.slice(0, k)]);
  const passing = new Map<number, Awaited<ReturnType<typeof attempt>>>();
  const k = await smallestPassing(1, order.length, async (n) => {
    if (attempts.length > opts.maxFallbacks) return false;
    const c = await attempt(keepFirst(n));
    if (c.failures.length === 0) passing.set(n, c);
    return c.failures.length === 0;
  });
  // k = every node (never probed: an all-fp32 "int8" model is pointless) reports the first failure.
  return finish(passing.get(k) ?? first);
}

/**
 * Every target's own int8 error: one run of the fp32 graph with each target's int8 chain
 * appended in shadow (transform.ts), so each node sees exactly fp32's input.
 */
async function nodeErrors(
  preparedBytes: Uint8Array,
  plan: StaticPlan,
  params: ReadonlyMap<string, U8Params>,
  fp32: Map<string, Float32Array>[],
  feeds: Feeds[],
): Promise<NodeError[]> {
  const model = decodeModel(preparedBytes);
  const scan = scanModel(model);
  const targets = planStatic(scan, new Set(), { depthwise: true }).targets.filter((t) =>
    plan.targets.some((p) => p.label === t.label),
  );
  applyStatic(model, scan, targets, params, "shadow");
  const shadows = targets.map((t) => shadowName(t.output));
  exposeOutputs(model, shadows);
  const int8 = await runExposed(encodeModel(model), [], feeds, shadows);
  return targets.map((t) => {
    let err = 0;
    let mag = 0;
    fp32.forEach((run, i) => {
      const a = run.get(t.output)!;
      const b = int8[i]!.get(shadowName(t.output))!;
      for (let j = 0; j < a.length; j++) {
        err = Math.max(err, Math.abs(a[j]! - b[j]!));
        mag = Math.max(mag, Math.abs(a[j]!));
      }
    });
    return { label: t.label, relError: mag > 0 ? err / mag : err };
  });
}

function exposeOutputs(model: ModelProto, names: string[]): void {
  const graph = model.graph!;
  const present = new Set((graph.output ?? []).map((o) => o.name));
  for (const name of names) {
    if (!present.has(name))
      graph.output = [...(graph.output ?? []), { name, type: { tensorType: { elemType: DT.FLOAT } } }];
  }
}

/**
 * Runs a model on every feed with `expose` added as graph outputs (graph optimisation off, so
 * no exposed value is fused away) and returns the requested float values per feed.
 */
async function runExposed(
  bytes: Uint8Array,
  expose: string[],
  feeds: Feeds[],
  read: string[] = expose,
): Promise<Map<string, Float32Array>[]> {
  let modelBytes = bytes;
  if (expose.length > 0) {
    const model = decodeModel(bytes);
    exposeOutputs(model, expose);
    modelBytes = encodeModel(model);
  }
  const session = await ort.InferenceSession.create(modelBytes, { ...QUIET, graphOptimizationLevel: "disabled" });
  try {
    const out: Map<string, Float32Array>[] = [];
    for (const f of feeds) {
      const res = await session.run(f, read);
      out.push(new Map(read.map((n) => [n, res[n]!.data as Float32Array])));
    }
    return out;
  } finally {
    await session.release();
  }
}
