import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AccuracyPolicySchema, compareOutputs, policyProblems } from "../../../fleet-server/quantize/compare.js";
import { canonicalJson } from "../../../shared/canonical-json.js";
import { OutputComparisonSchema } from "../../../shared/schemas/quantization-report.js";
import type { JsonTensor } from "../../../shared/schemas/tensor.js";

const t = (shape: number[], data: number[]): JsonTensor => ({ datatype: "FP32", shape, data });
const policy = AccuracyPolicySchema.parse({});

describe("int8 vs fp32 comparison under the accuracy policy", () => {
  it("passes small errors and reports max abs / relative error per output", () => {
    const r = compareOutputs([{ y: t([1, 3], [1, 2, 4]) }], [{ y: t([1, 3], [1.01, 2, 3.9]) }], policy);
    expect(r.failures).toEqual([]);
    expect(r.outputs[0]!.maxAbsError).toBeCloseTo(0.1, 5);
    expect(r.outputs[0]!.maxRelError).toBeCloseTo(0.025, 5);
    expect(r.top1Agreement).toBe(1);
  });

  it("fails an output over both the absolute and the relative bound", () => {
    const r = compareOutputs([{ y: t([1, 1], [1]) }], [{ y: t([1, 1], [1.5]) }], policy);
    expect(r.outputs[0]!.pass).toBe(false);
    expect(r.failures[0]).toContain("output y: max abs error 0.5");
  });

  it("an unbounded relative error (fp32 all zeros, int8 not) is null, so the signed report stays JSON", () => {
    const tight = AccuracyPolicySchema.parse({ maxAbsError: 0.001 });
    const r = compareOutputs([{ y: t([1, 2], [0, 0]) }], [{ y: t([1, 2], [0.01, 0]) }], tight);
    expect(r.outputs[0]!.maxRelError).toBeNull();
    // Still judged as unbounded: over both bounds, so the output fails.
    expect(r.outputs[0]!.pass).toBe(false);
    expect(r.failures[0]).toContain("relative Infinity > 0.1");
    // Within the absolute bound it passes whatever the relative error.
    expect(compareOutputs([{ y: t([1, 2], [0, 0]) }], [{ y: t([1, 2], [0.01, 0]) }], policy).failures).toEqual([]);
    // RFC 8785 refuses Infinity; the comparison as recorded in a manifest must canonicalize.
    expect(() => canonicalJson(r.outputs)).not.toThrow();
    expect(OutputComparisonSchema.array().safeParse(JSON.parse(canonicalJson(r.outputs))).success).toBe(true);
  });

  it("counts top-1 agreement over classifier rows and applies the minimum", () => {
    const ref = [{ p: t([2, 2], [0.6, 0.4, 0.2, 0.8]) }, { p: t([1, 2], [0.51, 0.49]) }];
    const cand = [{ p: t([2, 2], [0.6, 0.4, 0.2, 0.8]) }, { p: t([1, 2], [0.49, 0.51]) }];
    const r = compareOutputs(ref, cand, policy);
    expect(r.top1Agreement).toBeCloseTo(2 / 3, 6);
    expect(r.failures.some((f) => f.startsWith("top-1 agreement 0.667 < 1"))).toBe(true);
    expect(compareOutputs(ref, cand, AccuracyPolicySchema.parse({ minTop1Agreement: 0.5 })).failures).toEqual([]);
  });

  it("flags non-finite values, exact-match integer outputs, and honours per-output overrides", () => {
    const r = compareOutputs(
      [{ y: t([2], [1, 2]), idx: { datatype: "INT64", shape: [1], data: [3] } }],
      [{ y: t([2], [1, Number.NaN]), idx: { datatype: "INT64", shape: [1], data: [4] } }],
      policy,
    );
    expect(r.failures).toHaveLength(2);
    const ignored = compareOutputs(
      [{ state: t([2], [1, 1]) }],
      [{ state: t([2], [2, 1]) }],
      AccuracyPolicySchema.parse({ outputs: { state: { ignore: true } } }),
    );
    expect(ignored.failures).toEqual([]);
    expect(ignored.outputs[0]).toMatchObject({ ignored: true, maxAbsError: 1 });
  });

  it("refuses unknown policy fields", () => {
    expect(AccuracyPolicySchema.safeParse({ maxAbsErr: 1 }).success).toBe(false);
  });

  it("a sequence output [N, T, C] named in classifierOutputs is compared per time step", () => {
    // 1 sequence, 3 time steps, 2 classes: step 2's argmax flips.
    const ref = [{ seq: t([1, 3, 2], [0.9, 0.1, 0.4, 0.6, 0.7, 0.3]) }];
    const cand = [{ seq: t([1, 3, 2], [0.9, 0.1, 0.6, 0.4, 0.7, 0.3]) }];
    const named = AccuracyPolicySchema.parse({ classifierOutputs: ["seq"], maxAbsError: 1 });
    const r = compareOutputs(ref, cand, named);
    expect(r.outputs[0]!.top1).toEqual({ agree: 2, total: 3 });
    expect(r.failures).toEqual(["top-1 agreement 0.667 < 1 (2/3 rows)"]);
    // Not named: a rank-3 float output is not taken for class scores (a recurrent state is rank 3 too).
    expect(compareOutputs(ref, cand, AccuracyPolicySchema.parse({ maxAbsError: 1 })).top1Agreement).toBeNull();
  });

  it("policyProblems names the field and the model's real outputs (issue 23)", () => {
    const outputs = {
      probs: t([1, 4], [0, 0, 0, 1]),
      seq: t([1, 5, 3], new Array(15).fill(0)),
      score: t([1], [0.5]),
      idx: { datatype: "INT64" as const, shape: [1, 2], data: [0, 1] },
    };
    expect(
      policyProblems({ classifierOutputs: ["probs", "seq"], outputs: { score: { ignore: true } } }, outputs),
    ).toEqual([]);
    expect(
      policyProblems({ classifierOutputs: ["prob", "score", "idx"], outputs: { logits: { maxAbsError: 1 } } }, outputs),
    ).toEqual([
      'accuracyPolicy.classifierOutputs[0]: no output "prob" (the model\'s outputs are "probs", "seq", "score", "idx")',
      'accuracyPolicy.classifierOutputs[1]: output "score" has shape [1], not [N, C] or [N, T, C] with C >= 2 classes',
      'accuracyPolicy.classifierOutputs[2]: output "idx" is INT64, not float scores',
      'accuracyPolicy.outputs.logits: no output "logits" (the model\'s outputs are "probs", "seq", "score", "idx")',
    ]);
  });

  it("the documented example policy (docs/examples/accuracy-policy.json) parses", () => {
    const text = readFileSync(new URL("../../../docs/examples/accuracy-policy.json", import.meta.url), "utf8");
    expect(AccuracyPolicySchema.parse(JSON.parse(text)).classifierOutputs).toEqual(["probs", "ctc_logits"]);
  });
});
