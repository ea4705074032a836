import type { QuantizerReport } from "../../../shared/schemas/quantization-report.js";
import { DEFAULT_QUANTIZE_OPTIONS } from "../plan.js";
import type { StaticOptions, StaticOutcome } from "./quantize-static.js";

/**
 * The static build's part of the signed report, pure. It reuses the weight-only report's shape
 * (one schema for every int8 variant, shared/schemas/quantization-report.ts) with `method`
 * "int8-static" and the details under `static`; `weights` stays empty because no weight is
 * stored for dequantization — each lives inside its integer kernel.
 */
export function staticReport(
  outcome: StaticOutcome,
  opts: StaticOptions,
  calibrationInputs: number,
  bytes: { before: number; after: number },
): QuantizerReport {
  const kept = outcome.decisions.filter((d) => d.reason?.startsWith("kept in fp32")).map((d) => d.node);
  return {
    method: "int8-static",
    opset: outcome.opset.to,
    // Not used by the static form; recorded because the schema is shared with weight-only.
    weightOnlyEncoding: outcome.opset.to >= 13 ? "dequantize-linear-per-axis" : "cast-mul-per-channel",
    options: { ...DEFAULT_QUANTIZE_OPTIONS, keepFp32: [] },
    nodes: outcome.decisions.map((d) => ({
      node: d.node,
      op: d.op,
      action: d.action === "static-int8" ? "static-int8" : "skipped",
      ...(d.reason !== undefined ? { reason: d.reason } : {}),
    })),
    weights: [],
    totals: {
      weightsQuantized: outcome.stats.convNodes + outcome.stats.matmulNodes,
      dynamicNodes: 0,
      weightOnlyNodes: 0,
      bytesBefore: bytes.before,
      bytesAfter: bytes.after,
    },
    static: {
      calibration: {
        method: opts.calibration,
        ...(opts.calibration === "percentile" ? { percentile: opts.percentile } : {}),
        inputs: calibrationInputs,
      },
      opset: outcome.opset,
      batchNormsFolded: outcome.bnFolded,
      reluFused: outcome.stats.fusedRelus,
      convNodes: outcome.stats.convNodes,
      matmulNodes: outcome.stats.matmulNodes,
      keptFp32: kept,
      attempts: outcome.attempts.map((a) => ({ keptFp32: a.keptFp32.length, failures: a.failures })),
    },
  };
}
