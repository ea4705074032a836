/**
 * Activation calibration statistics, pure. Static int8 needs one fixed (scale, zero point) per
 * activation tensor, chosen from the values the tensor takes on representative inputs. Each
 * tensor keeps its exact min/max and a bounded, deterministic sample of its values (every k-th
 * element of each batch), from which a percentile range is read: clipping the rare outliers
 * buys resolution for the bulk of the distribution, which MinMax spends on a few extremes.
 */
export type CalibrationMethod = "minmax" | "percentile" | "entropy";

export interface RangeStats {
  min: number;
  max: number;
  /** Strided sample of the values seen, for percentile ranges. */
  sample: number[];
  /** Elements observed in total. */
  count: number;
}

/** Per-batch sample budget per tensor: enough for a 99.99th percentile over a few batches. */
export const SAMPLE_PER_BATCH = 16384;

export function emptyStats(): RangeStats {
  return { min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY, sample: [], count: 0 };
}

/** Adds one batch of a tensor's values (mutates and returns `stats`). Non-finite values are ignored. */
export function observe(stats: RangeStats, values: ArrayLike<number>, perBatch = SAMPLE_PER_BATCH): RangeStats {
  const step = Math.max(1, Math.floor(values.length / perBatch));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    if (v < stats.min) stats.min = v;
    if (v > stats.max) stats.max = v;
    if (i % step === 0) stats.sample.push(v);
  }
  stats.count += values.length;
  return stats;
}

/**
 * The float range [lo, hi] to quantize a tensor over. Always contains 0 (ONNX requires zero to
 * be exactly representable: padding and Relu produce exact zeros). `percentile` (e.g. 99.99)
 * clips both tails of the sampled distribution; the exact min/max still bound the result.
 */
export function calibratedRange(
  stats: RangeStats,
  method: CalibrationMethod,
  percentile = 99.99,
): { lo: number; hi: number } {
  if (stats.count === 0 || !Number.isFinite(stats.min)) return { lo: 0, hi: 0 };
  let lo = stats.min;
  let hi = stats.max;
  if (method === "percentile" && stats.sample.length > 0) {
    const sorted = Float64Array.from(stats.sample).sort();
    const last = sorted.length - 1;
    const tail = (100 - percentile) / 100;
    lo = Math.max(lo, sorted[Math.floor(tail * last)]!);
    hi = Math.min(hi, sorted[Math.ceil((1 - tail) * last)]!);
  }
  if (method === "entropy" && stats.sample.length > 0) {
    const t = entropyThreshold(stats.sample);
    lo = Math.max(lo, -t);
    hi = Math.min(hi, t);
  }
  return { lo: Math.min(0, lo), hi: Math.max(0, hi) };
}

/**
 * KL-divergence ("entropy") clipping threshold over |x|, as TensorRT's and onnxruntime's entropy
 * calibrators do: histogram |x| in `bins` bins, and for each candidate threshold i (from
 * `levels` bins up) compare the reference distribution P (bins below i, the clipped tail folded
 * into the last one) with Q (the same bins without the tail, merged into `levels` buckets and
 * spread back over the non-empty bins of each); the threshold with the smallest KL(P || Q) loses the least information when
 * `levels` steps cover [0, threshold]. Pure.
 */
export function entropyThreshold(values: readonly number[], bins = 512, levels = 128): number {
  let maxAbs = 0;
  for (const v of values) maxAbs = Math.max(maxAbs, Math.abs(v));
  if (maxAbs === 0) return 0;
  const hist = new Float64Array(bins);
  for (const v of values) hist[Math.min(bins - 1, Math.floor((Math.abs(v) / maxAbs) * bins))]!++;
  let best = bins;
  let bestKl = Number.POSITIVE_INFINITY;
  for (let i = levels; i <= bins; i++) {
    const p = Float64Array.from(hist.subarray(0, i));
    for (let j = i; j < bins; j++) p[i - 1]! += hist[j]!;
    const q = new Float64Array(i);
    const width = i / levels;
    for (let l = 0; l < levels; l++) {
      const start = Math.floor(l * width);
      const end = l === levels - 1 ? i : Math.floor((l + 1) * width);
      let sum = 0;
      let nonEmpty = 0;
      // Q comes from the bins without the folded tail (P has it): at i = levels Q would
      // otherwise equal P and the smallest threshold would always win.
      for (let j = start; j < end; j++) {
        sum += hist[j]!;
        if (hist[j]! > 0) nonEmpty++;
      }
      for (let j = start; j < end; j++) if (hist[j]! > 0) q[j] = sum / nonEmpty;
    }
    const kl = klDivergence(p, q);
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return (best / bins) * maxAbs;
}

function klDivergence(p: Float64Array, q: Float64Array): number {
  let ps = 0;
  let qs = 0;
  for (let i = 0; i < p.length; i++) {
    ps += p[i]!;
    qs += q[i]!;
  }
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! === 0) continue;
    // A bin P has and Q lacks makes KL infinite; a tiny floor keeps the comparison finite.
    const qi = q[i]! > 0 ? q[i]! / qs : 1e-12;
    kl += (p[i]! / ps) * Math.log(p[i]! / ps / qi);
  }
  return kl;
}

export interface U8Params {
  scale: number;
  zeroPoint: number;
}

/**
 * Asymmetric uint8 parameters for a range containing 0 (onnxruntime's activation scheme):
 * scale = (hi - lo) / 255 and zero_point = round(-lo / scale), so lo maps to 0 and hi to 255.
 * A degenerate range (all zeros) gets scale 1: any positive scale represents it exactly.
 */
export function u8Params(lo: number, hi: number): U8Params {
  if (!(hi > lo)) return { scale: 1, zeroPoint: 0 };
  const scale = Math.fround((hi - lo) / 255);
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/**
 * int32 bias for QLinearConv: b_q = round(b / (x_scale * w_scale[c])), zero point 0, as the
 * operator's spec requires (the bias is added to the int32 accumulator before requantizing).
 */
export function quantizeBias(bias: Float32Array, inputScale: number, weightScales: Float32Array): Int32Array {
  const out = new Int32Array(bias.length);
  for (let c = 0; c < bias.length; c++) {
    const s = inputScale * weightScales[weightScales.length === 1 ? 0 : c]!;
    const q = s > 0 ? Math.round(bias[c]! / s) : 0;
    out[c] = Math.max(-2147483647, Math.min(2147483647, q));
  }
  return out;
}
