import { EdgeFleetError } from "../../shared/errors.js";
import type { CreateModelRequest } from "../../shared/http/models.js";
import type { Sample } from "../../shared/schemas/tensor.js";
import { AccuracyPolicySchema, policyProblems } from "../quantize/compare.js";
import { decodeModel } from "../quantize/onnx-model.js";
import type { BuildProgressFn } from "./build-tracker.js";
import { buildInt8Variant, type Int8Outcome } from "./int8-variant.js";
import { inspectModel } from "./onnx-inspect.js";
import { SYNTHETIC_SAMPLE_COUNT, syntheticSamples } from "./synthetic-samples.js";

/** What of a model upload the checks read: everything but where it is stored and what it is called. */
export type ModelCheckRequest = Pick<
  CreateModelRequest,
  "samples" | "calibration" | "quantize" | "accuracyPolicy" | "allowSyntheticInt8"
>;

export interface ModelCheckResult {
  inspection: Awaited<ReturnType<typeof inspectModel>>;
  /** Whether the samples were generated from the model's metadata (no `samples` given). */
  synthetic: boolean;
  /** Null when int8 was not asked for. */
  int8: Int8Outcome | null;
}

/**
 * Everything the fleet server checks about an uploaded model before it builds a bundle (issue 21:
 * one implementation, run by `POST /v1/models` and offline by `fleetctl models validate`, so both
 * give the same verdict): it decodes as ONNX, runs in onnxruntime on its samples (or synthetic
 * inputs from its metadata), the accuracy policy fits its outputs, and the int8 variant is built
 * and validated under that policy. Throws EdgeFleetError for a model that cannot be accepted at
 * all; an int8 variant that fails is a result (`int8.report.validation.passed` false or
 * `int8.built` false), because the fp32 variant is still good.
 */
export async function checkModel(
  fp32Bytes: Uint8Array,
  req: ModelCheckRequest,
  onProgress?: BuildProgressFn,
): Promise<ModelCheckResult> {
  onProgress?.("inspecting");
  // Protobuf first, for precise refusals (not ONNX, truncated, external data); then onnxruntime.
  decodeModel(fp32Bytes);
  const int8Wanted = req.quantize === "int8";
  const calibrationInputs = int8Wanted ? (req.calibration ?? []) : [];
  // Sample outputs and (for int8) calibration outputs are both fp32 reference runs.
  // No samples: labelled synthetic inputs from the model's input metadata (synthetic-samples.ts).
  const synthetic = req.samples === undefined;
  const sampleCount = req.samples?.length ?? SYNTHETIC_SAMPLE_COUNT;
  const runs = sampleCount + calibrationInputs.length;
  const inspection = await inspectModel(fp32Bytes, req.samples ?? syntheticSamples, (done) =>
    onProgress?.("recording-samples", done, runs),
  ).catch((err: unknown) => {
    if (!synthetic || !(err instanceof EdgeFleetError) || err.code !== "VALIDATION_FAILED") throw err;
    throw new EdgeFleetError(
      "VALIDATION_FAILED",
      `${err.message} (the model does not run on inputs generated from its metadata: give real samples, fleetctl models push --samples FILE; see docs/operations.md "Samples")`,
    );
  });
  if (!int8Wanted) return { inspection, synthetic, int8: null };
  // The policy is checked against the model's real outputs before anything is quantized.
  const policyIssues = policyProblems(req.accuracyPolicy ?? {}, inspection.samples[0]?.outputs ?? {});
  if (policyIssues.length > 0) {
    throw new EdgeFleetError("VALIDATION_FAILED", policyIssues.join("; "), { details: { issues: policyIssues } });
  }
  // Calibration inputs are checked against fp32 first: a mismatch is the operator's error.
  const fp32Calibration: Sample[] =
    calibrationInputs.length > 0
      ? (
          await inspectModel(fp32Bytes, calibrationInputs, (done) =>
            onProgress?.("recording-samples", sampleCount + done, runs),
          )
        ).samples
      : [];
  const int8 = await buildInt8Variant({
    fp32Bytes,
    fp32Samples: inspection.samples,
    calibration: calibrationInputs,
    fp32Calibration,
    policy: AccuracyPolicySchema.parse(req.accuracyPolicy ?? {}),
    ...(onProgress ? { onProgress } : {}),
  });
  if (int8.built && synthetic && calibrationInputs.length === 0 && !req.allowSyntheticInt8) {
    // int8 is published only when judged on real inputs, or when the caller says so (issue 23).
    const v = int8.report.validation;
    v.passed = false;
    v.failures.push(
      "validated on synthetic inputs only: give real --samples or --calibration, or allowSyntheticInt8 (--allow-synthetic-int8)",
    );
  }
  return { inspection, synthetic, int8 };
}
