import { mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { buildBundle } from "../../fleet-server/bundles/bundle-builder.js";
import { inspectModel } from "../../fleet-server/registry/onnx-inspect.js";
import { sileroModelPath, sileroSamples } from "../../scripts/demo/silero.js";
import { sha256Hex } from "../../shared/hash.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { Sample, TensorSpec } from "../../shared/schemas/tensor.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import type { KeyPair } from "../../shared/trust/keys.js";

/**
 * Bundles for the adversarial suite: valid ones built by the fleet server's own builder, and
 * malicious ones assembled byte by byte (hand-written ustar headers), each with a manifest signed
 * by whichever key the attack calls for.
 */

export const MODEL = "silero-vad";

/** A bundle as the adversary serves it: its bytes plus what a desired state needs to point at it. */
export interface ServedBundle {
  sha256: string;
  size: number;
  bytes: Buffer;
  /** The signed manifest, exactly as it goes into the desired state's assignment. */
  manifest: Envelope<Manifest>;
}

/** The real Silero VAD model with its signature and golden samples (expected outputs recorded by onnxruntime). */
export interface SileroRelease {
  modelPath: string;
  modelBytes: Buffer;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  opset: number;
  samples: Sample[];
}

export async function loadSilero(): Promise<SileroRelease> {
  const modelPath = sileroModelPath();
  const modelBytes = await readFile(modelPath);
  const inspection = await inspectModel(modelBytes, sileroSamples());
  return { modelPath, modelBytes, ...inspection };
}

export interface ReleaseInfo {
  version: string;
  releaseCounter: number;
}

/** A manifest for Silero minus its file list, the way the fleet server's registry writes it. */
export function manifestBase(silero: SileroRelease, r: ReleaseInfo): Omit<Manifest, "files"> {
  return {
    _type: "manifest",
    model: { name: MODEL, version: r.version, variant: "fp32" },
    releaseCounter: r.releaseCounter,
    createdAt: "2025-06-01T00:00:00.000Z",
    inputs: silero.inputs,
    outputs: silero.outputs,
    opset: silero.opset,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  };
}

/** A well-formed bundle from `fleet-server/bundles/bundle-builder.ts`, manifest signed by `signer`. */
export async function buildValidBundle(
  workParent: string,
  silero: SileroRelease,
  r: ReleaseInfo,
  signer: KeyPair,
  /** Manifest fields over the base (e.g. a lineage to sign). */
  extra: Partial<Manifest> = {},
): Promise<ServedBundle> {
  const workDir = await mkdtemp(join(workParent, "build-"));
  try {
    const built = await buildBundle({
      manifest: { ...manifestBase(silero, r), ...extra },
      modelPath: silero.modelPath,
      samples: { samples: silero.samples },
      releaseKey: signer,
      workDir,
    });
    const bytes = await readFile(built.path);
    return { sha256: built.sha256, size: built.size, bytes, manifest: built.manifest };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-written tar archives

/** One raw tar entry. `type` is the ustar typeflag: "0" file, "2" symlink, "5" directory. */
export interface TarEntry {
  name: string;
  /** Also "6" FIFO and "x" a PAX extended header (its `data` holds the records). */
  type?: "0" | "1" | "2" | "5" | "6" | "x";
  data?: Buffer;
  linkname?: string;
}

function putString(buf: Buffer, offset: number, length: number, value: string): void {
  if (Buffer.byteLength(value, "latin1") > length) throw new Error(`tar field too long: ${value}`);
  buf.write(value, offset, length, "latin1");
}

const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, "0")}\0`;

/** A 512-byte ustar header written by hand: no tar library would write the entries attacks need. */
export function ustarHeader(e: TarEntry): Buffer {
  const h = Buffer.alloc(512);
  putString(h, 0, 100, e.name);
  putString(h, 100, 8, octal(e.type === "5" ? 0o755 : 0o644, 8));
  putString(h, 108, 8, octal(0, 8)); // uid
  putString(h, 116, 8, octal(0, 8)); // gid
  putString(h, 124, 12, octal(e.data?.length ?? 0, 12));
  putString(h, 136, 12, octal(1_700_000_000, 12));
  h.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  putString(h, 156, 1, e.type ?? "0");
  if (e.linkname !== undefined) putString(h, 157, 100, e.linkname);
  putString(h, 257, 6, "ustar\0");
  putString(h, 263, 2, "00");
  let sum = 0;
  for (const b of h) sum += b;
  putString(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

export function tarArchive(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    parts.push(ustarHeader(e), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024)); // end-of-archive: two zero blocks
  return Buffer.concat(parts);
}

/** The regular payload of a Silero bundle, as tar entries with their bytes. */
/** Plain regular-file tar entries for `files`. */
export function entriesOf(files: readonly { path: string; data: Buffer }[]): TarEntry[] {
  return files.map((f) => ({ name: f.path, data: f.data }));
}

export function sileroPayload(silero: SileroRelease): { path: string; data: Buffer }[] {
  return [
    { path: "model.onnx", data: silero.modelBytes },
    { path: "samples.json", data: Buffer.from(`${JSON.stringify({ samples: silero.samples })}\n`) },
  ];
}

export interface CraftOptions {
  release: ReleaseInfo;
  /** Files the signed manifest lists (path, size and SHA-256 from `data`). */
  listed: readonly { path: string; data: Buffer }[];
  /** Archive entries after `manifest.json` (which is always first, like the real builder's). */
  entries: readonly TarEntry[];
  signer: KeyPair;
}

/**
 * A malicious bundle whose manifest is validly signed and truthfully describes `listed`, while the
 * archive holds `entries`: the attack is in the difference between the two.
 */
export function craftBundle(silero: SileroRelease, o: CraftOptions): ServedBundle {
  const manifest: Manifest = {
    ...manifestBase(silero, o.release),
    files: o.listed.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256Hex(f.data) })),
  };
  const signed = signEnvelope(manifest, [o.signer]);
  const bytes = tarArchive([
    { name: "manifest.json", data: Buffer.from(`${JSON.stringify(signed, null, 2)}\n`) },
    ...o.entries,
  ]);
  return { sha256: sha256Hex(bytes), size: bytes.length, bytes, manifest: signed };
}

/** The same bytes with one byte flipped in the middle: same size, different SHA-256. */
export function tampered(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  const at = Math.floor(copy.length / 2);
  copy[at] = (copy[at]! ^ 0xff) & 0xff;
  return copy;
}

/** A PAX extended header setting `path` for the next entry (names longer than ustar's 100 bytes, NULs). */
export function paxPath(path: string): TarEntry {
  const body = ` path=${path}\n`;
  // The record length counts its own digits: find the fixed point.
  let len = body.length + 1;
  while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
  return { name: "PaxHeader", type: "x", data: Buffer.from(`${len}${body}`, "latin1") };
}
