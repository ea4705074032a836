import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { JsonTensor, SamplesFile } from "../../shared/schemas/tensor.js";
import type { SmokeResult } from "./model-runtime.js";
import { compareTensors } from "./tolerance.js";

/**
 * Runs every golden sample through `run` and compares each expected output within the sample's
 * tolerance (non-finite actual values always fail, see `compareTensors`). Never throws: a failing
 * sample is a result, so the updater can report which samples failed and why.
 */
export async function runSmokeTest(
  samples: SamplesFile,
  run: (inputs: Record<string, JsonTensor>) => Promise<Record<string, JsonTensor>>,
): Promise<SmokeResult> {
  const results: SmokeResult["samples"] = [];
  for (const [i, sample] of samples.samples.entries()) {
    const name = sample.name ?? `sample-${i}`;
    try {
      const actual = await run(sample.inputs);
      let maxAbsError = 0;
      const reasons: string[] = [];
      for (const [out, expected] of Object.entries(sample.outputs)) {
        const got = actual[out];
        if (!got) {
          reasons.push(`output ${out} missing`);
          maxAbsError = Number.POSITIVE_INFINITY;
          continue;
        }
        const cmp = compareTensors(got, expected, sample.tolerance);
        maxAbsError = Math.max(maxAbsError, cmp.maxAbsError);
        if (!cmp.ok) reasons.push(`output ${out}: ${cmp.reason}`);
      }
      if (reasons.length === 0) results.push({ name, ok: true, maxAbsError });
      else {
        const error = new EdgeFleetError("SMOKE_TEST_FAILED", `${name}: ${reasons.join("; ")}`).toJSON();
        results.push({ name, ok: false, maxAbsError, error });
      }
    } catch (err) {
      results.push({ name, ok: false, maxAbsError: Number.POSITIVE_INFINITY, error: toEdgeFleetError(err).toJSON() });
    }
  }
  return { ok: results.every((r) => r.ok), samples: results };
}
