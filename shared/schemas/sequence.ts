import { z } from "zod";
import { DatatypeSchema } from "./common.js";
import type { TensorSpec } from "./tensor.js";

/**
 * A stateful model's implicit state (issue 18, docs/protocol.md "Sequences"): declared in the
 * manifest so the model host keeps the state tensors between the frames of a sequence and the app
 * sends only the new frame (Triton's sequence batcher with implicit state). Optional: a manifest
 * without it is an ordinary stateless model, and nothing else changes.
 */
const InitialValueSchema = z
  .object({
    datatype: DatatypeSchema,
    /** Concrete dims (no -1): the value fed at `sequence_start`. */
    shape: z.array(z.number().int().min(0)).max(16),
    /** Every element equal to `fill` (default 0), unless `data` gives them all. */
    fill: z.number().optional(),
    data: z.array(z.number()).optional(),
  })
  .refine((v) => v.data === undefined || v.data.length === v.shape.reduce((n, d) => n * d, 1), {
    message: "data must have as many elements as the shape",
  });
export type InitialValue = z.infer<typeof InitialValueSchema>;

export const SequenceStateSchema = z.object({
  /** The input the state is fed to (e.g. Silero's `state`). */
  input: z.string().min(1),
  /** The output whose value becomes that input at the next frame (e.g. `stateN`). */
  output: z.string().min(1),
  initial: InitialValueSchema,
});

/**
 * A sliding window over an input (e.g. openWakeWord's classifier over its last embeddings): the app
 * sends k new steps along `axis` under the input's own name, the host feeds the whole window (the k
 * oldest steps dropped, the new ones at the end). Its length and start value: `initial`.
 */
export const SequenceWindowSchema = z.object({
  input: z.string().min(1),
  axis: z.number().int().min(0).max(15),
  initial: InitialValueSchema,
});

export const SequenceSpecSchema = z
  .object({
    state: z.array(SequenceStateSchema).max(32).default([]),
    windows: z.array(SequenceWindowSchema).max(32).default([]),
    /** Inputs with a fixed value for every frame (e.g. Silero's `sr` = 16000): the app does not send them. */
    constants: z
      .array(z.object({ input: z.string().min(1), value: InitialValueSchema }))
      .max(32)
      .default([]),
    /** Idle time after which a sequence is dropped (default: the agent's, 60 s). */
    idleTimeoutSeconds: z.number().positive().max(86_400).optional(),
    /** Live sequences per model at most (default: the agent's, 64); past it a start gets SEQUENCE_LIMIT. */
    maxSequences: z.number().int().min(1).max(100_000).optional(),
    /**
     * The state of this version can continue a sequence started on `stateCompatibleWith`'s versions: on
     * a hot swap, live sequences then move to the new version instead of finishing on the old one.
     */
    stateCompatibleWith: z.array(z.string()).max(64).default([]),
  })
  .refine(
    (s) =>
      new Set([...s.state.map((x) => x.input), ...s.windows.map((w) => w.input), ...s.constants.map((c) => c.input)])
        .size ===
      s.state.length + s.windows.length + s.constants.length,
    { message: "an input is declared twice in the sequence spec" },
  )
  .refine((s) => s.state.length + s.windows.length > 0, { message: "a sequence needs a state or a window" })
  .refine((s) => s.windows.every((w) => w.axis < w.initial.shape.length), {
    message: "a window's axis must be one of its initial value's dims",
  });
export type SequenceSpec = z.infer<typeof SequenceSpecSchema>;

/**
 * What in `spec` does not fit the model's inputs and outputs (names, datatypes, fixed dims of the
 * initial values); empty when it fits. Checked by the server at push and by the agent at load. Pure.
 */
export function sequenceSpecProblems(
  spec: SequenceSpec,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): string[] {
  const problems: string[] = [];
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const outNames = new Set(outputs.map((o) => o.name));
  const fits = (what: string, input: string, v: InitialValue) => {
    const i = byName.get(input);
    if (!i) return problems.push(`${what} "${input}" is not an input of the model`);
    if (i.datatype !== v.datatype)
      problems.push(`${what} "${input}" is ${v.datatype}, the model's input is ${i.datatype}`);
    const fixedMismatch =
      i.shape.length !== v.shape.length || i.shape.some((d, k) => typeof d === "number" && d >= 0 && d !== v.shape[k]);
    if (fixedMismatch) problems.push(`${what} "${input}": shape [${v.shape.join(",")}] does not fit the model's`);
    return 0;
  };
  for (const s of spec.state) {
    fits("state", s.input, s.initial);
    if (!outNames.has(s.output)) problems.push(`state output "${s.output}" is not an output of the model`);
  }
  for (const w of spec.windows) fits("window", w.input, w.initial);
  for (const c of spec.constants) fits("constant", c.input, c.value);
  return problems;
}
