import { elementCount, fromHalfBits, type RawTensor } from "../../shared/tensors.js";

/**
 * Pure decisions of the on-device strategies (issue 8): A/B arm choice, shadow sampling, output
 * agreement. No I/O, no clocks; randomness comes in as an argument so tests are deterministic.
 */
export type Arm = "control" | "candidate";

/** FNV-1a of a string mapped to [0, 1). Stable across processes and restarts (stickiness). */
export function hashUnit(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // One more avalanche round: FNV's low bits are weak for short, similar keys ("user-1", "user-2").
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/**
 * A/B arm for one request: `candidate` with probability `weight`. With a key the choice is a pure
 * function of (key, weight), so a user stays on one arm; raising the weight only moves keys from
 * control to candidate (u < weight is monotone in weight), never back.
 */
export function chooseArm(weight: number, key: string | undefined, random: () => number): Arm {
  const u = key === undefined ? random() : hashUnit(key);
  return u < weight ? "candidate" : "control";
}

/**
 * Whether a request is mirrored to the shadow (probability `sampleRate`). When a sampled request
 * actually runs is the shadow scheduler's business (shadow-scheduler.ts: idle time only).
 */
export function sampleShadow(sampleRate: number, random: () => number): boolean {
  return sampleRate > 0 && random() < sampleRate;
}

export interface AgreementTolerance {
  /** |a − b| ≤ atol + rtol·|b| for floating-point outputs. */
  atol: number;
  rtol: number;
}

export const DEFAULT_TOLERANCE: AgreementTolerance = { atol: 1e-4, rtol: 1e-3 };

function isFloat(t: RawTensor): boolean {
  return t.type === "float32" || t.type === "float64" || t.type === "float16";
}

/**
 * Whether two versions' outputs agree: same output names, shapes and types; floats within the
 * tolerance (NaN agrees only with NaN), everything else exactly equal. Outputs only one side
 * produced count as disagreement. Pure.
 */
export function outputsAgree(
  control: Record<string, RawTensor>,
  candidate: Record<string, RawTensor>,
  tol: AgreementTolerance = DEFAULT_TOLERANCE,
): boolean {
  const names = Object.keys(control);
  if (names.length !== Object.keys(candidate).length) return false;
  for (const name of names) {
    const a = control[name]!;
    const b = candidate[name];
    if (!b || a.type !== b.type || a.dims.length !== b.dims.length) return false;
    if (a.dims.some((d, i) => d !== b.dims[i])) return false;
    const n = elementCount(a.dims);
    if (isFloat(a)) {
      const half = a.type === "float16";
      for (let i = 0; i < n; i++) {
        const x = half ? fromHalfBits(a.data[i] as number) : (a.data[i] as number);
        const y = half ? fromHalfBits(b.data[i] as number) : (b.data[i] as number);
        if (Number.isNaN(x) || Number.isNaN(y)) {
          if (!(Number.isNaN(x) && Number.isNaN(y))) return false;
        } else if (x !== y && !(Math.abs(x - y) <= tol.atol + tol.rtol * Math.abs(y))) return false;
      }
    } else {
      for (let i = 0; i < n; i++) if (a.data[i] !== b.data[i]) return false;
    }
  }
  return true;
}
