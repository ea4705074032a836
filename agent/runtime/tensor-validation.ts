import { EdgeFleetError } from "../../shared/errors.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import { sequenceSpecProblems } from "../../shared/schemas/sequence.js";
import type { JsonTensor, TensorSpec } from "../../shared/schemas/tensor.js";
import { datatypeOf, elementCount, type RawTensor } from "../../shared/tensors.js";

/** A dim in a manifest spec is fixed when it is a non-negative number; -1 and names are dynamic. */
function isFixed(dim: number | string): dim is number {
  return typeof dim === "number" && dim >= 0;
}

/**
 * A spec's shape in the words of `GET /v2/models/{m}`: dynamic dims are -1 there, so they are -1 here
 * too, never the exporter's symbolic names (issue 20 §7: `p2o.DynamicDimension.0` meant nothing to an app).
 */
export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.map((d) => (isFixed(d) ? String(d) : "-1")).join(",")}]`;
}

/**
 * Checks request inputs against the manifest's input specs before anything reaches a host, so a bad
 * request costs no IPC and gets a precise INVALID_TENSOR message. Data length vs shape is checked by
 * `jsonToRaw`. Pure.
 */
export function validateInputs(specs: readonly TensorSpec[], inputs: Record<string, JsonTensor>): void {
  const known = new Set(specs.map((s) => s.name));
  for (const name of Object.keys(inputs)) {
    if (!known.has(name)) {
      throw new EdgeFleetError("INVALID_TENSOR", `unknown input "${name}"; expected: ${[...known].join(", ")}`);
    }
  }
  for (const spec of specs) {
    const t = inputs[spec.name];
    if (!t) throw new EdgeFleetError("INVALID_TENSOR", `missing input "${spec.name}"`);
    if (t.datatype !== spec.datatype) {
      throw new EdgeFleetError(
        "INVALID_TENSOR",
        `input "${spec.name}": datatype ${t.datatype}, expected ${spec.datatype}`,
      );
    }
    if (t.shape.length !== spec.shape.length) {
      throw new EdgeFleetError(
        "INVALID_TENSOR",
        `input "${spec.name}": rank ${t.shape.length} (shape [${t.shape.join(",")}]), expected rank ${spec.shape.length} ${formatShape(spec.shape)}`,
      );
    }
    spec.shape.forEach((dim, i) => {
      if (isFixed(dim) && t.shape[i] !== dim) {
        throw new EdgeFleetError(
          "INVALID_TENSOR",
          `input "${spec.name}": dim ${i} is ${t.shape[i]}, expected ${dim} (shape [${t.shape.join(",")}] vs ${formatShape(spec.shape)})`,
        );
      }
      // A zero in a dynamic dim is an empty tensor: nothing to infer on, and onnxruntime answers it with an
      // internal error deep in some kernel (issue 20 §3: [1,3,48,0] and [0,3,48,8] on PP-OCR). Refused here,
      // as the caller's mistake, before it can reach a host. A spec that fixes a dim at 0 keeps it.
      if (!isFixed(dim) && t.shape[i] === 0) {
        throw new EdgeFleetError(
          "INVALID_TENSOR",
          `input "${spec.name}": dim ${i} is 0; an empty tensor cannot be inferred on (shape [${t.shape.join(",")}] vs ${formatShape(spec.shape)})`,
        );
      }
    });
  }
}

/** Requested output names must exist; returns them deduplicated (undefined = all). Pure. */
export function validateOutputNames(specs: readonly TensorSpec[], requested?: readonly string[]): string[] | undefined {
  if (!requested) return undefined;
  const known = new Set(specs.map((s) => s.name));
  for (const name of requested) {
    if (!known.has(name)) {
      throw new EdgeFleetError("INVALID_TENSOR", `unknown output "${name}"; available: ${[...known].join(", ")}`);
    }
  }
  return [...new Set(requested)];
}

/** A tensor of zeros matching a spec (dynamic dims become 1), used to warm a session when no sample exists. */
export function zerosFor(spec: TensorSpec): JsonTensor {
  const shape = spec.shape.map((d) => (isFixed(d) ? d : 1));
  const count = shape.reduce((a, b) => a * b, 1);
  const zero = spec.datatype === "BOOL" ? false : spec.datatype === "BYTES" ? "" : 0;
  return { datatype: spec.datatype, shape, data: new Array(count).fill(zero) };
}

/** `validateInputs` for typed-array inputs, plus the element count against the dims. Pure. */
export function validateRawInputs(specs: readonly TensorSpec[], inputs: Record<string, RawTensor>): void {
  const asJson: Record<string, JsonTensor> = {};
  for (const [name, t] of Object.entries(inputs)) {
    const count = elementCount(t.dims);
    if (t.data.length !== count) {
      throw new EdgeFleetError(
        "INVALID_TENSOR",
        `input "${name}": shape [${t.dims.join(",")}] needs ${count} elements, got ${t.data.length}`,
      );
    }
    asJson[name] = { datatype: datatypeOf(t.type), shape: t.dims, data: [] };
  }
  validateInputs(specs, asJson);
}

/** The manifest's inputs must be exactly the session's (names), or the version does not load. */
export function checkSessionInputs(manifest: Manifest, metadata: { inputs: readonly { name: string }[] }): void {
  const sessionInputs = new Set(metadata.inputs.map((i) => i.name));
  const missing = manifest.inputs.filter((s) => !sessionInputs.has(s.name)).map((s) => s.name);
  if (missing.length > 0 || sessionInputs.size !== manifest.inputs.length) {
    throw new EdgeFleetError(
      "MODEL_LOAD_FAILED",
      `manifest inputs [${manifest.inputs.map((s) => s.name).join(",")}] do not match the model's [${[...sessionInputs].join(",")}]`,
    );
  }
  // A sequence spec that names what the model lacks would fail at the first frame: refuse the load.
  const problems = manifest.sequence ? sequenceSpecProblems(manifest.sequence, manifest.inputs, manifest.outputs) : [];
  if (problems.length > 0) throw new EdgeFleetError("MODEL_LOAD_FAILED", `manifest sequence: ${problems.join("; ")}`);
}
