import * as ort from "onnxruntime-node";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type OrtTensorType, rawToJson } from "../../shared/tensors.js";

/** Runs a model in-process with onnxruntime-node: the reference the agent's answers are compared with. */
export async function runDirect(
  modelPath: string,
  inputs: Record<string, JsonTensor>,
  options: ort.InferenceSession.SessionOptions = {},
): Promise<Record<string, JsonTensor>> {
  const session = await ort.InferenceSession.create(modelPath, options);
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) {
      const raw = jsonToRaw(name, t);
      feeds[name] = new ort.Tensor(raw.type as "float32", raw.data as Float32Array, raw.dims);
    }
    const out = await session.run(feeds);
    const result: Record<string, JsonTensor> = {};
    for (const [name, t] of Object.entries(out)) {
      result[name] = rawToJson({ type: t.type as OrtTensorType, data: t.data as Float32Array, dims: [...t.dims] });
    }
    return result;
  } finally {
    await session.release();
  }
}
