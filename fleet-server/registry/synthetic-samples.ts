import type { SampleInput, TensorSpec } from "../../shared/schemas/tensor.js";
import { seededRandom } from "../../shared/seeded-random.js";

/**
 * Smoke-test inputs generated from the model's input metadata, for `POST /v1/models` without
 * `samples` (issue 23: pushing a model must work with one command). They prove that a device
 * loads the bundle and computes what the server computed on the same inputs; they say nothing
 * about accuracy on real data, so they are labelled in their name (which the bundle's
 * samples.json keeps) and an int8 variant validated only on them is not published unless the
 * caller asks for it (`allowSyntheticInt8`).
 */
export const SYNTHETIC_LABEL = "synthetic (generated from input metadata, not real data)";
export const SYNTHETIC_SAMPLE_COUNT = 2;

/** Length given to a dynamic axis after the first (sequence, time, width): many ops need more than 1. */
export const SYNTHETIC_DYNAMIC_LENGTH = 64;

/**
 * Pure: concrete dims for a spec. A dynamic axis (-1 or a symbolic name) is 1 when it is the
 * first one (the batch), else SYNTHETIC_DYNAMIC_LENGTH (a sequence of length 1 breaks common
 * ops such as reflect padding in audio front ends).
 */
export function concreteShape(shape: TensorSpec["shape"]): number[] {
  return shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? 1 : SYNTHETIC_DYNAMIC_LENGTH));
}

function value(datatype: TensorSpec["datatype"], next: () => number): number | boolean | string {
  if (datatype === "BOOL") return next() < 0.5;
  if (datatype === "BYTES") return "";
  if (datatype.startsWith("FP")) return Number((next() * 2 - 1).toFixed(6));
  // Integers stay small and non-negative: they are often indices, lengths or rates.
  return Math.floor(next() * 4);
}

/** Pure: `count` labelled sample inputs, one tensor per model input, values from a fixed seed. */
export function syntheticSamples(inputs: readonly TensorSpec[], count = SYNTHETIC_SAMPLE_COUNT): SampleInput[] {
  return Array.from({ length: count }, (_, i) => {
    const next = seededRandom(0x5eed + i);
    return {
      name: `${SYNTHETIC_LABEL} #${i + 1}`,
      inputs: Object.fromEntries(
        inputs.map((spec) => {
          const shape = concreteShape(spec.shape);
          const size = shape.reduce((n, d) => n * d, 1);
          return [
            spec.name,
            { datatype: spec.datatype, shape, data: Array.from({ length: size }, () => value(spec.datatype, next)) },
          ];
        }),
      ),
    };
  });
}

/** Pure: whether samples were generated here (their name carries the label). */
export function isSynthetic(sample: { name?: string | undefined }): boolean {
  return sample.name?.startsWith(SYNTHETIC_LABEL) === true;
}
