import { EdgeFleetError } from "../../shared/errors.js";
import type { InitialValue, SequenceSpec } from "../../shared/schemas/sequence.js";
import { jsonToRaw, type RawTensor } from "../../shared/tensors.js";
import { slideWindow } from "./sequence-window.js";

/** One frame of a sequence as the agent tells the host (run frame header `seq`, host-headers.ts). */
export interface SequenceStep {
  id: string;
  start: boolean;
  end: boolean;
}

/**
 * The implicit state of a stateful model's live sequences, kept in the model host (issue 18): the
 * process that holds the session holds the state, so a frame crosses the agent↔host channel with the
 * app's inputs only, and the state tensors onnxruntime returned are fed back as they are (no copy, no
 * conversion). A host that dies takes its sequences with it; the agent notices (sequence-store.ts).
 *
 * Invariant: a failed run changes nothing — `feeds` does not touch the table, only `commit` does, so
 * a frame refused by onnxruntime can be sent again and a failed start leaves no sequence behind.
 * Runs never overlap in a host (model-host-main.ts), so `feeds`/`commit` of one run are not interleaved.
 */
export interface HostSequences {
  /** The app's feeds plus the step's state (initial at a start) and constants; throws SEQUENCE_UNKNOWN. */
  feeds(step: SequenceStep, app: Record<string, RawTensor>): Record<string, RawTensor>;
  /** What to fetch from the session: the wanted outputs plus the state outputs (undefined = all). */
  fetches(wanted: string[] | undefined): string[] | undefined;
  /** Keeps the new state (or forgets the sequence at its end) and returns what the app gets back. */
  commit(
    step: SequenceStep,
    outputs: Record<string, RawTensor>,
    wanted: string[] | undefined,
  ): Record<string, RawTensor>;
  drop(ids: readonly string[]): number;
  /** The state of these sequences (unknown ids are left out), to continue them in another host. */
  export(ids: readonly string[]): Record<string, Record<string, RawTensor>>;
  /** Takes sequences over from another host; their state must have this spec's inputs. */
  import(states: Record<string, Record<string, RawTensor>>): number;
  size(): number;
}

const tensorOf = (name: string, v: InitialValue): RawTensor => {
  const count = v.shape.reduce((n, d) => n * d, 1);
  return jsonToRaw(name, { datatype: v.datatype, shape: v.shape, data: v.data ?? new Array(count).fill(v.fill ?? 0) });
};

export function createHostSequences(spec: SequenceSpec): HostSequences {
  // Built once: onnxruntime never writes into its feeds, so every sequence can start from the same tensors.
  const initial: Record<string, RawTensor> = {};
  for (const s of spec.state) initial[s.input] = tensorOf(s.input, s.initial);
  const windows = new Map(spec.windows.map((w) => [w.input, w.axis]));
  for (const w of spec.windows) initial[w.input] = tensorOf(w.input, w.initial);
  /** The windows `feeds` built for the run under way (runs never overlap); `commit` keeps them. */
  let slid: Record<string, RawTensor> = {};
  const constants: Record<string, RawTensor> = {};
  for (const c of spec.constants) constants[c.input] = tensorOf(c.input, c.value);
  const implicit = new Set([...Object.keys(initial), ...Object.keys(constants)]);
  const stateOutputs = new Set(spec.state.map((s) => s.output));
  const live = new Map<string, Record<string, RawTensor>>();

  return {
    feeds(step, app) {
      const state = step.start ? initial : live.get(step.id);
      if (!state) throw new EdgeFleetError("SEQUENCE_UNKNOWN", `sequence ${step.id} has no state in this model host`);
      const out: Record<string, RawTensor> = {};
      slid = {};
      for (const [name, axis] of windows) {
        const frame = app[name];
        if (!frame) throw new EdgeFleetError("INVALID_TENSOR", `missing input "${name}" (the window's new steps)`);
        slid[name] = slideWindow(name, state[name]!, frame, axis);
      }
      for (const name in app) {
        if (windows.has(name)) continue;
        if (implicit.has(name)) {
          throw new EdgeFleetError(
            "INVALID_TENSOR",
            `input "${name}" is the sequence's implicit state; do not send it`,
          );
        }
        out[name] = app[name]!;
      }
      for (const name in state) out[name] = slid[name] ?? state[name]!;
      for (const name in constants) out[name] = constants[name]!;
      return out;
    },
    fetches(wanted) {
      if (!wanted) return undefined;
      return [...new Set([...wanted, ...stateOutputs])];
    },
    commit(step, outputs, wanted) {
      if (step.end) live.delete(step.id);
      else {
        const next: Record<string, RawTensor> = {};
        for (const s of spec.state) {
          const t = outputs[s.output];
          if (!t) throw new EdgeFleetError("INFERENCE_FAILED", `the model returned no "${s.output}" (sequence state)`);
          next[s.input] = t;
        }
        for (const name in slid) next[name] = slid[name]!;
        live.set(step.id, next);
      }
      const reply: Record<string, RawTensor> = {};
      if (wanted) for (const n of wanted) reply[n] = outputs[n]!;
      else for (const n in outputs) if (!stateOutputs.has(n)) reply[n] = outputs[n]!;
      return reply;
    },
    drop(ids) {
      let n = 0;
      for (const id of ids) if (live.delete(id)) n++;
      return n;
    },
    export(ids) {
      const out: Record<string, Record<string, RawTensor>> = {};
      for (const id of ids) {
        const s = live.get(id);
        if (s) out[id] = s;
      }
      return out;
    },
    import(states) {
      let n = 0;
      for (const [id, s] of Object.entries(states)) {
        for (const name of Object.keys(initial)) {
          const t = s[name];
          const want = initial[name]!;
          if (!t || t.type !== want.type || t.dims.join() !== want.dims.join()) {
            throw new EdgeFleetError("INVALID_TENSOR", `sequence ${id}: state "${name}" does not fit this model`);
          }
        }
        live.set(id, s);
        n++;
      }
      return n;
    },
    size: () => live.size,
  };
}
