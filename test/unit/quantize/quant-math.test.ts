import { describe, expect, it } from "vitest";
import {
  dequantizePerChannel,
  quantizePerChannel,
  roundHalfEven,
  transpose2d,
} from "../../../fleet-server/quantize/quant-math.js";

describe("int8 weight arithmetic (ONNX QuantizeLinear / DequantizeLinear)", () => {
  it("rounds half to even, as the spec requires", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -3]);
  });

  it("computes one symmetric scale per channel and zero points of 0", () => {
    // [2, 4] along axis 0: channel 0 max |w| = 127 -> scale 1; channel 1 max |w| = 2.54 -> scale 0.02.
    const w = Float32Array.from([2.5, -3.5, 127, 0.5, 0.01, -2.54, 1.27, 0]);
    const cq = quantizePerChannel(w, [2, 4], 0);
    expect([...cq.scales]).toEqual([1, Math.fround(2.54 / 127)]);
    expect([...cq.zeroPoints]).toEqual([0, 0]);
    // Channel 0 ties go to even (2.5 -> 2, -3.5 -> -4, 0.5 -> 0); channel 1 is x / 0.02 rounded.
    expect([...cq.q]).toEqual([2, -4, 127, 0, 0, -127, 64, 0]);
    // DequantizeLinear: (q - zp) * scale, per channel.
    const back = dequantizePerChannel(cq, [2, 4]);
    expect(back[2]).toBe(127);
    expect(back[6]).toBeCloseTo(1.28, 6);
  });

  it("quantizes along an inner axis (MatMul [K, N] weights: one scale per column)", () => {
    const w = Float32Array.from([1, -10, 0.4, 4, -1, 2]); // [3, 2]
    const cq = quantizePerChannel(w, [3, 2], 1);
    expect([...cq.scales]).toEqual([Math.fround(1 / 127), Math.fround(10 / 127)]);
    expect([...cq.q]).toEqual([127, -127, 51, 51, -127, 25]);
  });

  it("gives an all-zero channel scale 1 and saturates to the reduced range", () => {
    const cq = quantizePerChannel(Float32Array.from([0, 0, 1, -1]), [2, 2], 0, 63);
    expect([...cq.scales]).toEqual([1, Math.fround(1 / 63)]);
    expect([...cq.q]).toEqual([0, 0, 63, -63]);
  });

  it("error is at most half a step per element", () => {
    const w = Float32Array.from({ length: 4 * 50 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 4)));
    const cq = quantizePerChannel(w, [4, 50], 0);
    const back = dequantizePerChannel(cq, [4, 50]);
    for (let i = 0; i < w.length; i++)
      expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(cq.scales[Math.floor(i / 50)]! / 2 + 1e-7);
  });

  it("transposes [rows, cols]", () => {
    expect([...transpose2d(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, 3)]).toEqual([1, 4, 2, 5, 3, 6]);
  });
});
