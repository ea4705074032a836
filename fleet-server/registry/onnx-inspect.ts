import * as ort from "onnxruntime-node";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Sample, SampleInput, TensorSpec } from "../../shared/schemas/tensor.js";
import { datatypeOf, jsonToRaw, type RawTensor, rawToJson } from "../../shared/tensors.js";
import { readDefaultOpset } from "./opset.js";

export interface ModelInspection {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  opset: number;
  samples: Sample[];
}

const DEFAULT_TOLERANCE = { abs: 1e-4, rel: 1e-3 };

function specOf(meta: ort.InferenceSession.ValueMetadata): TensorSpec {
  if (!meta.isTensor) {
    throw new EdgeFleetError(
      "MODEL_LOAD_FAILED",
      `model value ${meta.name} is not a tensor (sequences/maps unsupported)`,
    );
  }
  return {
    name: meta.name,
    datatype: datatypeOf(meta.type),
    // ORT reports dynamic axes as a symbolic name, or "" when unnamed; unnamed ones become -1.
    shape: meta.shape.map((d) => (typeof d === "number" ? d : d === "" ? -1 : d)),
  };
}

/**
 * Loads the model in onnxruntime-node (proof that devices can load it too), reads its signature
 * and records the expected outputs of every sample. The session is always released.
 */
export async function inspectModel(
  modelBytes: Uint8Array,
  /** The inputs to record, or a function making them from the model's input specs (synthetic samples). */
  samplesOrGenerator: SampleInput[] | ((inputs: TensorSpec[]) => SampleInput[]),
  /** Called once the model is loaded (0 done) and after each sample run. */
  onProgress?: (done: number, total: number) => void,
): Promise<ModelInspection> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelBytes, { graphOptimizationLevel: "all" });
  } catch (err) {
    throw new EdgeFleetError("MODEL_LOAD_FAILED", `onnxruntime cannot load the model: ${(err as Error).message}`);
  }
  try {
    const inputs = session.inputMetadata.map(specOf);
    const outputs = session.outputMetadata.map(specOf);
    const sampleInputs = typeof samplesOrGenerator === "function" ? samplesOrGenerator(inputs) : samplesOrGenerator;
    const samples: Sample[] = [];
    onProgress?.(0, sampleInputs.length);
    for (const [i, sample] of sampleInputs.entries()) {
      const label = sample.name ?? `#${i}`;
      const expected = new Set(session.inputNames);
      const given = Object.keys(sample.inputs);
      const missing = [...expected].filter((n) => !given.includes(n));
      const extra = given.filter((n) => !expected.has(n));
      if (missing.length > 0 || extra.length > 0) {
        throw new EdgeFleetError(
          "VALIDATION_FAILED",
          `sample ${label}: inputs must be exactly [${[...expected].join(", ")}]` +
            (missing.length ? `; missing ${missing.join(", ")}` : "") +
            (extra.length ? `; unknown ${extra.join(", ")}` : ""),
        );
      }
      const feeds: Record<string, ort.Tensor> = {};
      for (const spec of inputs) {
        const json = sample.inputs[spec.name]!;
        if (json.datatype !== spec.datatype) {
          throw new EdgeFleetError(
            "VALIDATION_FAILED",
            `sample ${label}: input ${spec.name} must be ${spec.datatype}, got ${json.datatype}`,
          );
        }
        const raw = jsonToRaw(spec.name, json);
        feeds[spec.name] = new ort.Tensor(raw.type, raw.data as never, raw.dims);
      }
      let result: ort.InferenceSession.OnnxValueMapType;
      try {
        result = await session.run(feeds);
      } catch (err) {
        throw new EdgeFleetError("VALIDATION_FAILED", `sample ${label}: inference failed: ${(err as Error).message}`);
      }
      const outs: Sample["outputs"] = {};
      for (const name of session.outputNames) {
        const t = result[name] as ort.Tensor;
        outs[name] = rawToJson({
          type: t.type as RawTensor["type"],
          data: t.data as RawTensor["data"],
          dims: [...t.dims],
        });
        t.dispose();
      }
      samples.push({
        ...(sample.name !== undefined ? { name: sample.name } : {}),
        inputs: sample.inputs,
        outputs: outs,
        tolerance: { ...DEFAULT_TOLERANCE, ...sample.tolerance },
      });
      onProgress?.(samples.length, sampleInputs.length);
    }
    // ORT does not expose the opset; the protobuf does. A model without a default-domain import
    // is unusual but legal, so fall back to 1 (the schema's minimum) rather than refusing it.
    const opset = readDefaultOpset(modelBytes) ?? 1;
    return { inputs, outputs, opset, samples };
  } finally {
    await session.release();
  }
}
