import { EdgeFleetError } from "../../shared/errors.js";
import type { RawTensor } from "../../shared/tensors.js";

type Numeric = Exclude<RawTensor["data"], string[]>;

/**
 * A sliding window (issue 18, manifest `sequence.windows`): `frame` (k steps along `axis`) enters the
 * window at its end and the k oldest steps leave, as a wake-word classifier reads the last N
 * embeddings. Pure: a new tensor, `window` untouched (it may still be another sequence's or the
 * initial value). Every dim but `axis` must match; k at most the window's length.
 */
export function slideWindow(name: string, window: RawTensor, frame: RawTensor, axis: number): RawTensor {
  const wd = window.dims;
  const fd = frame.dims;
  if (frame.type !== window.type || fd.length !== wd.length || fd.some((d, i) => i !== axis && d !== wd[i])) {
    throw new EdgeFleetError(
      "INVALID_TENSOR",
      `input "${name}": a frame of the window must be ${window.type} [${wd.map((d, i) => (i === axis ? "k" : d)).join(",")}], got ${frame.type} [${fd.join(",")}]`,
    );
  }
  const length = wd[axis]!;
  const k = fd[axis]!;
  if (k < 1 || k > length) {
    throw new EdgeFleetError(
      "INVALID_TENSOR",
      `input "${name}": a frame of 1 to ${length} steps along dim ${axis}, got ${k}`,
    );
  }
  if (typeof window.data[0] === "string" || Array.isArray(window.data)) {
    throw new EdgeFleetError("INVALID_TENSOR", `input "${name}": string windows are not supported`);
  }
  const outer = wd.slice(0, axis).reduce((n, d) => n * d, 1);
  const inner = wd.slice(axis + 1).reduce((n, d) => n * d, 1);
  const src = window.data as Numeric;
  const add = frame.data as Numeric;
  const out = new (src.constructor as new (n: number) => Numeric)(src.length);
  const keep = (length - k) * inner;
  for (let o = 0; o < outer; o++) {
    const base = o * length * inner;
    // Typed arrays of one type: `set` copies the raw elements (bigint arrays included).
    (out as Float32Array).set((src as Float32Array).subarray(base + k * inner, base + length * inner), base);
    (out as Float32Array).set((add as Float32Array).subarray(o * k * inner, (o + 1) * k * inner), base + keep);
  }
  return { type: window.type, dims: [...wd], data: out };
}
