import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { z } from "zod";
import { checkModel } from "../../fleet-server/registry/model-checks.js";
import { AccuracyPolicySchema, CreateModelRequestSchema } from "../../shared/http/models.js";
import { SampleInputSchema } from "../../shared/schemas/tensor.js";
import { ApiError } from "./api-client.js";
import { EXIT } from "./exit-codes.js";
import { createProgressLine } from "./progress.js";

type ReadJson = <S extends z.ZodType>(path: string, schema: S, flag: string) => Promise<z.output<S>>;

/**
 * `fleetctl models validate model.onnx [--samples F] [--calibration F] [--accuracy-policy F]`: the
 * server's own checks (fleet-server/registry/model-checks.ts) run here, with no server, as a
 * pre-deploy gate. The verdict is the one `POST /v1/models` would reach for the same files.
 */
export function registerValidateCommand(models: Command, readJsonFile: ReadJson, isJson: (c: Command) => boolean) {
  models
    .command("validate <file>")
    .description("run the server's upload checks locally (no server): ONNX, samples, accuracy policy, int8 build")
    .option("--samples <file>", "JSON file: array of { inputs: {...} } (as for push); omitted: synthetic inputs")
    .option("--calibration <file>", "JSON file: extra inputs to validate int8 against fp32")
    .option("--accuracy-policy <file>", "JSON file: the int8 accuracy policy (as for push)")
    .option("--quantize <mode>", "int8 (default) or none", "int8")
    .option("--allow-synthetic-int8", "accept int8 validated on synthetic inputs only")
    .action(async (file: string, o: Record<string, string>, cmd: Command) => {
      const fields = CreateModelRequestSchema.shape;
      const samples = o.samples ? await readJsonFile(o.samples, fields.samples, "--samples") : undefined;
      const calibration = o.calibration
        ? await readJsonFile(o.calibration, z.array(SampleInputSchema), "--calibration")
        : undefined;
      const accuracyPolicy = o.accuracyPolicy
        ? await readJsonFile(o.accuracyPolicy, AccuracyPolicySchema.partial(), "--accuracy-policy")
        : undefined;
      if (o.quantize !== "int8" && o.quantize !== "none") {
        throw new ApiError(0, "VALIDATION_FAILED", `--quantize must be int8 or none, got "${o.quantize}"`);
      }
      const bytes = await readFile(file).catch((err: Error) => {
        throw new ApiError(0, "VALIDATION_FAILED", `${file}: ${err.message}`);
      });
      const line = createProgressLine();
      let result: Awaited<ReturnType<typeof checkModel>>;
      try {
        result = await checkModel(
          bytes,
          {
            quantize: o.quantize,
            ...(samples ? { samples } : {}),
            ...(calibration ? { calibration } : {}),
            ...(accuracyPolicy ? { accuracyPolicy } : {}),
            allowSyntheticInt8: Boolean(o.allowSyntheticInt8),
          },
          (phase, done, total) =>
            line.update(
              `${phase}${total ? ` ${done}/${total}` : ""}`,
              total && done !== undefined ? done / total : undefined,
            ),
        );
      } catch (err) {
        line.done("refused");
        const e = err as { code?: string; message?: string };
        if (isJson(cmd)) console.log(JSON.stringify({ verdict: "refused", code: e.code, error: e.message }, null, 2));
        else console.error(`refused: ${e.code ?? "ERROR"}: ${e.message}`);
        process.exitCode = EXIT.VALIDATION_FAILED;
        return;
      }
      line.done("checked");
      const int8 = result.int8;
      const int8Passed = int8 === null ? null : int8.built && int8.report.validation.passed;
      const verdict = int8 === null || int8Passed ? "accepted" : "accepted-fp32-only";
      const summary = {
        verdict,
        samples: result.inspection.samples.length,
        synthetic: result.synthetic,
        inputs: result.inspection.inputs,
        outputs: result.inspection.outputs,
        int8:
          int8 === null
            ? null
            : int8.built
              ? { built: true, passed: int8Passed, validation: int8.report.validation }
              : { built: false, reason: int8.reason },
      };
      if (isJson(cmd)) console.log(JSON.stringify(summary, null, 2));
      else {
        console.log(`${verdict}: runs on ${summary.samples}${summary.synthetic ? " synthetic" : ""} samples`);
        if (int8 && !int8.built) console.log(`  int8 not built: ${int8.reason}`);
        if (int8?.built) {
          const v = int8.report.validation;
          console.log(
            `  int8 ${v.passed ? "passes" : "FAILS"} the accuracy policy: size ${(v.sizeRatio * 100).toFixed(1)}% of fp32, latency x${v.latency.ratio} here`,
          );
          for (const f of v.failures) console.log(`    failed: ${f}`);
        }
      }
      // The int8 variant is what the accuracy gate guards; fp32 alone is still deployable.
      if (int8 !== null && !int8Passed) process.exitCode = EXIT.ACCEPTED_FP32_ONLY;
    });
}
