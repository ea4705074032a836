import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tar from "tar";
import { afterAll, describe, expect, it } from "vitest";
import { buildBundle } from "../../../fleet-server/bundles/bundle-builder.js";
import { readDefaultOpset } from "../../../fleet-server/registry/opset.js";
import { decodeSamples } from "../../../shared/samples-codec.js";
import { SignedManifestSchema } from "../../../shared/schemas/manifest.js";
import { SamplesFileSchema } from "../../../shared/schemas/tensor.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";

const MODEL = "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx";
const dir = mkdtempSync(join(tmpdir(), "bundle-builder-"));
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
const manifest = {
  _type: "manifest" as const,
  model: { name: "vad", version: "1.0.0", variant: "fp32" as const },
  releaseCounter: 1,
  createdAt: "2025-01-01T00:00:00.000Z",
  inputs: [{ name: "x", datatype: "FP32" as const, shape: [1] }],
  outputs: [{ name: "y", datatype: "FP32" as const, shape: [1] }],
  opset: 16,
  compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
  lineage: {},
  quantization: null,
};

async function build(name: string, modelCard?: string) {
  const workDir = mkdtempSync(join(dir, `${name}-`));
  return buildBundle({
    manifest,
    modelPath: MODEL,
    samples,
    ...(modelCard ? { modelCard } : {}),
    releaseKey: release,
    workDir,
  });
}

async function entries(path: string) {
  const out: { path: string; type: string; mode: number; body: Buffer }[] = [];
  await tar.list({
    file: path,
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on("data", (c: Buffer) => chunks.push(c));
      e.on("end", () => out.push({ path: e.path, type: e.type, mode: e.mode ?? 0, body: Buffer.concat(chunks) }));
    },
  });
  return out;
}

describe("buildBundle", () => {
  it("packs exactly the manifest's files, regular 0644 entries, manifest first", async () => {
    const b = await build("a", "# VAD\n");
    expect(b.sha256).toBe(createHash("sha256").update(readFileSync(b.path)).digest("hex"));
    const list = await entries(b.path);
    expect(list.map((e) => e.path)).toEqual([
      "manifest.json",
      "model.onnx",
      "samples.json",
      "samples.bin",
      "MODEL_CARD.md",
    ]);
    for (const e of list) {
      expect(e.type).toBe("File");
      expect(e.mode & 0o777).toBe(0o644);
    }
    const signed = SignedManifestSchema.parse(JSON.parse(list[0]!.body.toString("utf8")));
    expect(signed).toEqual(b.manifest);
    expect(signed.signatures[0]!.keyid).toBe(release.keyid);
    const listed = signed.signed.files;
    expect(listed.map((f) => f.path)).toEqual(["model.onnx", "samples.json", "samples.bin", "MODEL_CARD.md"]);
    for (const f of listed) {
      const body = list.find((e) => e.path === f.path)!.body;
      expect(body.length).toBe(f.size);
      expect(createHash("sha256").update(body).digest("hex")).toBe(f.sha256);
    }
    // The samples travel as an index and a compressed blob, and decode to exactly what was given.
    const back = await decodeSamples(list[2]!.body.toString("utf8"), async () => list[3]!.body);
    expect(back).toEqual(SamplesFileSchema.parse(samples));
  });

  it("is reproducible and gzips only when it saves at least 15%", async () => {
    const a = await build("r1");
    const b = await build("r2");
    expect(a.sha256).toBe(b.sha256);
    // Silero VAD weights are float32 noise: gzip saves far less than 15%, so the tar stays plain.
    const magic = readFileSync(a.path).subarray(0, 2);
    expect(a.gzipped).toBe(magic[0] === 0x1f && magic[1] === 0x8b);
  });
});

describe("readDefaultOpset", () => {
  it("reads the default-domain opset of a real model and rejects garbage", () => {
    expect(readDefaultOpset(readFileSync(MODEL))).toBe(16);
    expect(readDefaultOpset(Buffer.from("not a protobuf at all"))).toBeNull();
  });
});
