/**
 * Weight quantization arithmetic, pure. Weights use symmetric int8 per channel:
 * zero point 0 and scale_c = max|w_c| / qmax, the scheme onnxruntime's own quantizer uses for
 * weights (qmin = -qmax, so +max and -max are both representable). Quantized values follow the
 * ONNX QuantizeLinear spec: y = saturate(round(x / y_scale) + y_zero_point), rounding half to
 * even, computed in float32; DequantizeLinear gives back x' = (y - y_zero_point) * y_scale.
 */
export interface ChannelQuantization {
  /** int8 values, same layout as the input. */
  q: Int8Array;
  /** One float32 scale per slice along `axis`. */
  scales: Float32Array;
  /** One zero point per slice (always 0 for the symmetric scheme; stored for DequantizeLinear). */
  zeroPoints: Int8Array;
  axis: number;
}

/** Round half to even, as the ONNX spec requires for QuantizeLinear and DynamicQuantizeLinear. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; when x is exactly halfway and r is odd, step back to the even one.
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** 127 normally; 63 ("reduce range", 7 bits) where int8 products must not saturate int16 sums. */
export function qmaxFor(reduceRange: boolean): number {
  return reduceRange ? 63 : 127;
}

/**
 * Per-channel symmetric quantization of a float tensor along `axis`.
 * A channel of all zeros gets scale 1 (any positive scale represents it exactly, and the spec
 * needs a non-zero scale to divide by).
 */
export function quantizePerChannel(
  data: Float32Array,
  dims: readonly number[],
  axis: number,
  qmax = 127,
): ChannelQuantization {
  if (axis < 0 || axis >= dims.length) throw new RangeError(`axis ${axis} out of range for rank ${dims.length}`);
  const channels = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const absMax = new Float32Array(channels);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const v = Math.abs(data[i]!);
    if (v > absMax[c]!) absMax[c] = v;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = absMax[c]! > 0 ? Math.fround(absMax[c]! / qmax) : 1;
  const q = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const v = roundHalfEven(Math.fround(data[i]! / scales[c]!));
    q[i] = Math.min(qmax, Math.max(-qmax, v));
  }
  return { q, scales, zeroPoints: new Int8Array(channels), axis };
}

/** DequantizeLinear (per-axis): x' = (q - zero_point[c]) * scale[c], in float32. */
export function dequantizePerChannel(cq: ChannelQuantization, dims: readonly number[]): Float32Array {
  const channels = dims[cq.axis]!;
  const inner = dims.slice(cq.axis + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(cq.q.length);
  for (let i = 0; i < out.length; i++) {
    const c = Math.floor(i / inner) % channels;
    out[i] = Math.fround((cq.q[i]! - cq.zeroPoints[c]!) * cq.scales[c]!);
  }
  return out;
}

/** Transpose of a 2-D row-major [rows, cols] matrix (Gemm transB=1 weights become MatMul's [K, N]). */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}
