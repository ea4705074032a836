// The policy is part of the HTTP contract (`POST /v1/models`) and of the signed int8 report, so its
// schema lives in shared/ (shared/schemas/quantization-report.ts), as does the comparison's.
import {
  type AccuracyPolicy,
  AccuracyPolicySchema,
  type OutputComparison,
} from "../../shared/schemas/quantization-report.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

export type { OutputComparison };
export { type AccuracyPolicy, AccuracyPolicySchema };

export interface ComparisonResult {
  outputs: OutputComparison[];
  top1Agreement: number | null;
  failures: string[];
}

const FLOAT_TYPES = new Set(["FP32", "FP64", "FP16"]);

/**
 * Pure: what is wrong with an accuracy policy for a model, given one sample's fp32 outputs
 * (concrete shapes). Issue 23: a policy naming an output the model does not have, or a
 * classifier output that has no class axis, used to be ignored silently; each is now a precise
 * message naming the field. Classifier outputs are `[N, C]` or sequences `[N, T, C]` (top-1 is
 * then compared per time step), with C >= 2 classes on the last axis.
 */
export function policyProblems(policy: Partial<AccuracyPolicy>, outputs: Record<string, JsonTensor>): string[] {
  const names = Object.keys(outputs);
  const known = `the model's outputs are ${names.map((n) => `"${n}"`).join(", ")}`;
  const problems: string[] = [];
  (policy.classifierOutputs ?? []).forEach((name, i) => {
    const t = outputs[name];
    const at = `accuracyPolicy.classifierOutputs[${i}]`;
    if (!t) problems.push(`${at}: no output "${name}" (${known})`);
    else if (!FLOAT_TYPES.has(t.datatype)) problems.push(`${at}: output "${name}" is ${t.datatype}, not float scores`);
    else if ((t.shape.length !== 2 && t.shape.length !== 3) || (t.shape.at(-1) ?? 0) < 2) {
      problems.push(`${at}: output "${name}" has shape [${t.shape}], not [N, C] or [N, T, C] with C >= 2 classes`);
    }
  });
  for (const name of Object.keys(policy.outputs ?? {})) {
    if (!outputs[name]) problems.push(`accuracyPolicy.outputs.${name}: no output "${name}" (${known})`);
  }
  return problems;
}

function isClassifier(name: string, t: JsonTensor, policy: AccuracyPolicy): boolean {
  if (policy.classifierOutputs) return policy.classifierOutputs.includes(name);
  return FLOAT_TYPES.has(t.datatype) && t.shape.length === 2 && (t.shape[1] ?? 0) >= 2;
}

/** Argmax over the last axis: one per row of `[N, C]`, one per time step of `[N, T, C]`. */
function argmaxRows(data: readonly number[], width: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * width < data.length; r++) {
    let best = 0;
    for (let c = 1; c < width; c++) if (data[r * width + c]! > data[r * width + best]!) best = c;
    out.push(best);
  }
  return out;
}

/**
 * Compares the int8 variant's outputs with fp32's, sample by sample, and applies the policy.
 * Pure: both sides are given as recorded JSON tensors.
 */
export function compareOutputs(
  reference: Record<string, JsonTensor>[],
  candidate: Record<string, JsonTensor>[],
  policy: AccuracyPolicy,
): ComparisonResult {
  const failures: string[] = [];
  const byName = new Map<string, Omit<OutputComparison, "maxRelError"> & { absMax: number }>();
  let agree = 0;
  let rows = 0;
  reference.forEach((ref, i) => {
    for (const [name, r] of Object.entries(ref)) {
      const c = candidate[i]?.[name];
      const acc = byName.get(name) ?? {
        output: name,
        maxAbsError: 0,
        nonFinite: 0,
        pass: true,
        absMax: 0,
      };
      byName.set(name, acc);
      if (!c || c.shape.join(",") !== r.shape.join(",")) {
        acc.pass = false;
        failures.push(`sample #${i}: output ${name} has shape [${c?.shape ?? "missing"}], fp32 has [${r.shape}]`);
        continue;
      }
      if (!FLOAT_TYPES.has(r.datatype)) {
        // Integer/bool outputs (indices, masks) carry no tolerance: they must match exactly.
        const diff = r.data.findIndex((v, k) => v !== c.data[k]);
        if (diff >= 0) {
          acc.pass = false;
          failures.push(`sample #${i}: ${r.datatype} output ${name} differs at element ${diff}`);
        }
        continue;
      }
      for (let k = 0; k < r.data.length; k++) {
        const a = r.data[k] as number;
        const b = c.data[k] as number;
        if (Number.isFinite(a) && !Number.isFinite(b)) acc.nonFinite++;
        else if (Number.isFinite(a)) acc.maxAbsError = Math.max(acc.maxAbsError, Math.abs(a - b));
        if (Number.isFinite(a)) acc.absMax = Math.max(acc.absMax, Math.abs(a));
      }
      if (isClassifier(name, r, policy) && !policy.outputs?.[name]?.ignore) {
        const width = r.shape[r.shape.length - 1] ?? 1;
        const ra = argmaxRows(r.data as number[], width);
        const ca = argmaxRows(c.data as number[], width);
        const same = ra.filter((v, k) => v === ca[k]).length;
        acc.top1 = { agree: (acc.top1?.agree ?? 0) + same, total: (acc.top1?.total ?? 0) + ra.length };
        agree += same;
        rows += ra.length;
      }
    }
  });
  const outputs: OutputComparison[] = [];
  for (const acc of byName.values()) {
    const { absMax, ...rest } = acc;
    const rel = absMax > 0 ? rest.maxAbsError / absMax : rest.maxAbsError === 0 ? 0 : Number.POSITIVE_INFINITY;
    // Unbounded is recorded as null: the report is signed JSON, which has no Infinity.
    const cmp: OutputComparison = { ...rest, maxRelError: Number.isFinite(rel) ? rel : null };
    const own = policy.outputs?.[cmp.output] ?? {};
    const maxAbs = own.maxAbsError ?? policy.maxAbsError;
    const maxRel = own.maxRelError ?? policy.maxRelError;
    if (own.ignore) cmp.ignored = true;
    else if (cmp.nonFinite > 0) {
      cmp.pass = false;
      failures.push(`output ${cmp.output}: ${cmp.nonFinite} non-finite values where fp32 is finite`);
    } else if (cmp.pass && cmp.maxAbsError > maxAbs && rel > maxRel) {
      cmp.pass = false;
      failures.push(
        `output ${cmp.output}: max abs error ${fmt(cmp.maxAbsError)} > ${maxAbs} and relative ${fmt(rel)} > ${maxRel}`,
      );
    }
    outputs.push(cmp);
  }
  const top1Agreement = rows > 0 ? agree / rows : null;
  if (top1Agreement !== null && top1Agreement < policy.minTop1Agreement) {
    failures.push(`top-1 agreement ${fmt(top1Agreement)} < ${policy.minTop1Agreement} (${agree}/${rows} rows)`);
  }
  return { outputs, top1Agreement, failures };
}

export function fmt(x: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x);
}
