import type { TensorSpec } from "../../shared/schemas/tensor.js";
import type { LoadedVersion } from "../runtime/model-runtime.js";

export interface V2TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface V2ModelMetadata {
  name: string;
  versions: string[];
  platform: "onnxruntime_onnx";
  inputs: V2TensorMetadata[];
  outputs: V2TensorMetadata[];
  /**
   * Which build answers (issue 20 §7): an app can tell the variant it is served (fp32/int8) and pin
   * results to one bundle. The `parameters` extension of the protocol allows them on metadata.
   */
  parameters: { version: string; variant: string; bundle_sha256: string };
}

/** v2 metadata writes dynamic dims as -1; manifests may name them. */
function toV2(spec: TensorSpec): V2TensorMetadata {
  return { name: spec.name, datatype: spec.datatype, shape: spec.shape.map((d) => (typeof d === "number" ? d : -1)) };
}

/** Metadata of one version, listing every version of the model that can be addressed. Pure. */
export function modelMetadata(version: LoadedVersion, allVersions: readonly string[]): V2ModelMetadata {
  const m = version.installed.manifest;
  return {
    name: version.installed.model,
    versions: [...new Set(allVersions)],
    platform: "onnxruntime_onnx",
    inputs: m.inputs.map(toV2),
    outputs: m.outputs.map(toV2),
    parameters: {
      version: version.installed.version,
      variant: version.installed.variant,
      bundle_sha256: version.installed.sha256,
    },
  };
}
