import { sha256Hex } from "../../../shared/hash.js";
import type { Manifest } from "../../../shared/schemas/manifest.js";
import type { Envelope, Root } from "../../../shared/schemas/trust.js";
import { signEnvelope } from "../../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair } from "../../../shared/trust/keys.js";

/** One hand-built tar entry; `type` is the ustar typeflag character. */
export interface RawEntry {
  name: string;
  type?: string;
  data?: Buffer;
  linkname?: string;
  /** Overrides the size field (for lying headers). */
  size?: number;
}

function field(buf: Buffer, offset: number, length: number, value: string): void {
  buf.write(value, offset, Math.min(length, Buffer.byteLength(value)), "latin1");
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, "0")}\0`;
}

/** Hand-crafted ustar header: lets tests write entries no well-behaved tar library would. */
export function ustarHeader(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  field(h, 0, 100, e.name);
  field(h, 100, 8, octal(0o644, 8));
  field(h, 108, 8, octal(0, 8));
  field(h, 116, 8, octal(0, 8));
  field(h, 124, 12, octal(e.size ?? e.data?.length ?? 0, 12));
  field(h, 136, 12, octal(1_700_000_000, 12));
  h.fill(0x20, 148, 156);
  field(h, 156, 1, e.type ?? "0");
  if (e.linkname) field(h, 157, 100, e.linkname);
  field(h, 257, 6, "ustar\0");
  field(h, 263, 2, "00");
  let sum = 0;
  for (const b of h) sum += b;
  field(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

export function buildTar(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(ustarHeader(e));
    const data = e.data ?? Buffer.alloc(0);
    parts.push(data);
    const pad = (512 - (data.length % 512)) % 512;
    parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface TestKeys {
  root: Root;
  rootKey: KeyPair;
  release: KeyPair;
  director: KeyPair;
}

export function makeKeys(): TestKeys {
  const rootKey = generateKeyPair();
  const release = generateKeyPair();
  const director = generateKeyPair();
  const keys: Root["keys"] = {};
  for (const k of [rootKey, release, director]) keys[k.keyid] = k.publicKey;
  const root: Root = {
    _type: "root",
    version: 1,
    expires: "2099-01-01T00:00:00Z",
    keys,
    roles: {
      root: { keyids: [rootKey.keyid], threshold: 1 },
      release: { keyids: [release.keyid], threshold: 1 },
      director: { keyids: [director.keyid], threshold: 1 },
    },
  };
  return { root, rootKey, release, director };
}

/** A syntactically valid ModelProto (ir_version, producer_name) without a graph: the agent scans models for external data. */
const PRODUCER = Buffer.from("not really onnx, but bytes with a hash");
export const MODEL_BYTES = Buffer.concat([Buffer.from([0x08, 0x08, 0x12, PRODUCER.length]), PRODUCER]);
export const SAMPLES_BYTES = Buffer.from(
  JSON.stringify({
    samples: [
      {
        inputs: { x: { datatype: "FP32", shape: [1], data: [1] } },
        outputs: { y: { datatype: "FP32", shape: [1], data: [2] } },
      },
    ],
  }),
);

export function makeManifest(over: Partial<Manifest> = {}, files?: { path: string; data: Buffer }[]): Manifest {
  const list = files ?? [
    { path: "model.onnx", data: MODEL_BYTES },
    { path: "samples.json", data: SAMPLES_BYTES },
  ];
  return {
    _type: "manifest",
    model: { name: "vad", version: "1.0.0", variant: "fp32" },
    releaseCounter: 1,
    createdAt: "2025-01-01T00:00:00Z",
    files: list.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256Hex(f.data) })),
    inputs: [{ name: "x", datatype: "FP32", shape: [1] }],
    outputs: [{ name: "y", datatype: "FP32", shape: [1] }],
    opset: 17,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
    ...over,
  };
}

export function signedManifest(keys: TestKeys, manifest: Manifest): Envelope<Manifest> {
  return signEnvelope(manifest, [keys.release]);
}
