import { describe, expect, it } from "vitest";
import {
  concreteShape,
  isSynthetic,
  SYNTHETIC_DYNAMIC_LENGTH,
  SYNTHETIC_LABEL,
  syntheticSamples,
} from "../../../fleet-server/registry/synthetic-samples.js";
import { JsonTensorSchema } from "../../../shared/schemas/tensor.js";

/** Issue 23: `models push` without samples gets labelled inputs generated from the model's metadata. */
describe("synthetic samples", () => {
  it("a dynamic batch axis is 1, a later dynamic axis gets a usable length, fixed axes stay", () => {
    expect(concreteShape(["batch", 3, 224, 224])).toEqual([1, 3, 224, 224]);
    expect(concreteShape([-1, "time", 80])).toEqual([1, SYNTHETIC_DYNAMIC_LENGTH, 80]);
    expect(concreteShape([])).toEqual([]);
  });

  it("one valid tensor per input, of its datatype, labelled, the same on every call", () => {
    const specs = [
      { name: "image", datatype: "FP32" as const, shape: ["n", 3, 4, 4] },
      { name: "ids", datatype: "INT64" as const, shape: [1, "t"] },
      { name: "mask", datatype: "BOOL" as const, shape: [2] },
    ];
    const a = syntheticSamples(specs);
    expect(a).toHaveLength(2);
    expect(a.map((s) => s.name)).toEqual([`${SYNTHETIC_LABEL} #1`, `${SYNTHETIC_LABEL} #2`]);
    expect(a.every(isSynthetic)).toBe(true);
    expect(isSynthetic({ name: "recorded at site A" })).toBe(false);
    const image = a[0]!.inputs.image!;
    expect(JsonTensorSchema.parse(image).shape).toEqual([1, 3, 4, 4]);
    expect(image.data).toHaveLength(48);
    expect(image.data.every((v) => typeof v === "number" && v >= -1 && v < 1)).toBe(true);
    expect(new Set(image.data).size).toBeGreaterThan(40);
    expect(a[0]!.inputs.ids!.data.every((v) => Number.isInteger(v) && (v as number) >= 0)).toBe(true);
    expect(a[0]!.inputs.mask!.data.every((v) => typeof v === "boolean")).toBe(true);
    // Deterministic, and the two samples differ.
    expect(syntheticSamples(specs)).toEqual(a);
    expect(a[1]!.inputs.image!.data).not.toEqual(image.data);
  });
});
