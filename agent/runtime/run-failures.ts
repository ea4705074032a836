import { EdgeFleetError, type ErrorCode } from "../../shared/errors.js";
import type { RawTensor } from "../../shared/tensors.js";

/**
 * Who is to blame when onnxruntime fails a run, and what of its message may reach a client
 * (issue 20 §3, §7). Pure, unit-tested; the runtime applies it to every failed run.
 */

/** onnxruntime's own checks of the feeds against the graph's inputs, before any kernel runs. */
const FEED_CHECKS = [
  /Got invalid dimensions for input/i,
  /Invalid rank for input/i,
  /Unexpected input data type/i,
  /is missing in 'feeds'/i,
  /Invalid Feed Input Name/i,
  /input '.*' is not found in/i,
];

/**
 * A kernel that failed on the sizes it was given (a shape the graph cannot take: "Invalid input shape",
 * "cannot be reshaped", Silero's "Pad reflect requires axis length >= 2 ... Input shape:{1,1}"), as
 * opposed to a fault of its own (allocation, an unsupported op). Deliberately broad: whether such a
 * failure is the caller's is then decided by whether the model has ever run these shapes.
 */
const SHAPE_FAILURE = /shape|dimension|\baxis\b|broadcast|out of (?:bounds|range)/i;

/** `/onnxruntime_src/.../reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(const ...&, bool) ` */
const SOURCE_LOCATION =
  /(?:[A-Za-z]:)?[\\/]?(?:[\w.@+-]+[\\/])+[\w.@+-]+\.(?:cc|cpp|cxx|c|h|hpp|hxx|inl):\d+\s+(?:[\w:~<>,* &]+\([^)]*\)\s*(?:const\s*)?)?/g;
/** Any other absolute path of two or more segments (POSIX or Windows). */
const ABSOLUTE_PATH = /(?:[A-Za-z]:\\|(?<![\w.])\/)(?:[\w.@+-]+[\\/])+[\w.@+-]*/g;

/**
 * A message without the source paths, code locations and C++ signatures onnxruntime puts in its
 * errors, nor any other absolute path, nor ANSI colour codes (issue 20 §7: a zero batch answered
 * with `/onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 ...`). Pure.
 */
export function sanitizeMessage(message: string): string {
  return (
    message
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences are what is removed
      .replace(/\u001b\[[0-9;]*m/g, "")
      .replace(SOURCE_LOCATION, "")
      .replace(ABSOLUTE_PATH, "<path>")
      .replace(/\s*\n\s*/g, " ")
      .replace(/\s{2,}/g, " ")
      .trim()
  );
}

export type RunFailureKind = "feeds" | "shape" | "other";

/** What kind of onnxruntime failure a message describes. Pure. */
export function classifyRunFailure(message: string): RunFailureKind {
  if (FEED_CHECKS.some((r) => r.test(message))) return "feeds";
  const status = /Status Message:(.*)$/s.exec(message)?.[1] ?? message;
  return SHAPE_FAILURE.test(status) ? "shape" : "other";
}

/** The inputs' names, types and dims: what decides whether a graph can run, whatever the values. */
export function shapeSignature(feeds: Record<string, RawTensor>): string {
  return Object.keys(feeds)
    .sort()
    .map((n) => `${n}:${feeds[n]!.type}[${feeds[n]!.dims.join(",")}]`)
    .join(";");
}

const fmt = (feeds: Record<string, RawTensor>) =>
  Object.entries(feeds)
    .map(([n, t]) => `${n} [${t.dims.join(",")}]`)
    .join(", ");

/**
 * The error a client gets for a failed run, and whether it is the caller's fault.
 * - onnxruntime refusing the feeds themselves: the request's fault (400 INVALID_TENSOR).
 * - a kernel failing on the sizes it got, for input shapes this model has never run successfully:
 *   the request's fault (400): a careless app's odd shapes must not count against a model
 *   (issue 20 §3). For shapes the model *has* served (the smoke test's samples, or earlier client
 *   requests on any version of it), the same failure is the model's (500 INFERENCE_FAILED): a
 *   candidate that breaks on what the previous version served is a regression, and probation counts it.
 * - anything else: the model's (500), with the message sanitized.
 * Errors that are not onnxruntime's (host crash, not ready, timeouts) pass through unchanged. Pure.
 */
export function attributeRunFailure(
  err: EdgeFleetError,
  feeds: Record<string, RawTensor>,
  provenShape: boolean,
): EdgeFleetError {
  if (err.code !== "INFERENCE_FAILED") return err;
  const clean = sanitizeMessage(err.message);
  const kind = classifyRunFailure(err.message);
  if (kind === "feeds") return new EdgeFleetError("INVALID_TENSOR", `the model refused the inputs: ${clean}`);
  if (kind === "shape" && !provenShape) {
    return new EdgeFleetError("INVALID_TENSOR", `the model cannot run on inputs ${fmt(feeds)}: ${clean}`);
  }
  return new EdgeFleetError("INFERENCE_FAILED", clean);
}

/**
 * Error codes of a failed inference that are the model's fault, and so count against it in
 * probation (issue 20 §3): the run failed inside onnxruntime, its host died or hung, or something
 * broke in the agent after the request passed validation. Everything else (invalid requests 4xx,
 * a version that is not ready, local storage faults) says nothing about the model. Pure.
 */
const MODEL_FAULTS = new Set<ErrorCode>([
  "INFERENCE_FAILED",
  "HOST_CRASHED",
  "TIMEOUT",
  "INTERNAL",
  "NON_FINITE_OUTPUT",
]);
export function isModelFault(code: ErrorCode | undefined): boolean {
  return code === undefined || MODEL_FAULTS.has(code);
}

/**
 * Input shapes each model has run successfully (any version), bounded per model so a client
 * cycling through sizes cannot grow it without limit (oldest forgotten first).
 */
export function createShapeMemory(maxPerModel = 1024) {
  const byModel = new Map<string, Set<string>>();
  return {
    remember(model: string, signature: string): void {
      let set = byModel.get(model);
      if (!set) {
        set = new Set();
        byModel.set(model, set);
      }
      if (set.has(signature)) return;
      set.add(signature);
      if (set.size > maxPerModel) set.delete(set.values().next().value as string);
    },
    has: (model: string, signature: string): boolean => byModel.get(model)?.has(signature) === true,
  };
}
