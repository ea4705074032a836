import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants } from "node:zlib";
import { z } from "zod";
import { EdgeFleetError } from "../errors.js";
import { sha256Hex } from "../hash.js";
import { Sha256Schema } from "../schemas/common.js";
import { type HashedTensor, hashTensors } from "./onnx-layout.js";

/**
 * Tensor-level delta between two versions of a model (issue 17), and the other files of the target bundle.
 *
 * Binary layout: `"EFDELTA1"` · u32 big-endian header length · UTF-8 JSON header (`DeltaHeaderSchema`) ·
 * payload (`payload.encoding`; inflates to `payload.rawBytes`). The target model is the concatenation of
 * `ops`: `["l", offset, length]` copies `length` bytes of the payload from `offset` (skeleton, changed
 * tensors), `["r", sha256, length]` copies the base model's tensor with that SHA-256 (reused weights).
 * `files` are the target bundle's other files (manifest.json, samples, card), literal in the payload.
 */
export const DELTA_MAGIC = Buffer.from("EFDELTA1", "ascii");
export const DELTA_FORMAT = "edgefleet-delta-v1";
/** Header JSON cap: one op per tensor keeps it near 100 bytes per tensor. */
export const MAX_DELTA_HEADER = 8 * 1024 * 1024;
/** Inflation bound (the agent refuses a larger declared payload before it inflates a byte). */
export const MAX_DELTA_PAYLOAD = 1024 * 1024 * 1024;
/** Brotli only where it saves at least this share (the gzip rule for bundles, architecture.md §2). */
const COMPRESS_MIN_SAVING = 0.15;

const OpSchema = z.union([
  z.tuple([z.literal("l"), z.number().int().min(0), z.number().int().min(0)]),
  z.tuple([z.literal("r"), Sha256Schema, z.number().int().min(1)]),
]);
export type DeltaOp = z.infer<typeof OpSchema>;

const FileRefSchema = z.object({ sha256: Sha256Schema, size: z.number().int().min(0) });

export const DeltaHeaderSchema = z.object({
  format: z.literal(DELTA_FORMAT),
  /** model.onnx of the version the device has committed. */
  base: FileRefSchema,
  /** model.onnx of the version being installed (release-signed in its manifest). */
  target: FileRefSchema,
  ops: z.array(OpSchema).max(1_000_000),
  files: z
    .array(
      z.object({ path: z.string().min(1).max(255), offset: z.number().int().min(0), length: z.number().int().min(0) }),
    )
    .max(64),
  payload: z.object({
    encoding: z.enum(["none", "brotli"]),
    rawBytes: z.number().int().min(0).max(MAX_DELTA_PAYLOAD),
  }),
});
export type DeltaHeader = z.infer<typeof DeltaHeaderSchema>;

export interface DeltaPlan {
  /** Target tensors the device already has in the base (by SHA-256): shipped as references. */
  reused: HashedTensor[];
  /** Target tensors not in the base: shipped literally. */
  shipped: HashedTensor[];
  ops: DeltaOp[];
  /** The literal bytes `ops` refer to (skeleton + shipped tensors), in target order. */
  literal: Buffer;
}

/** Which of the target's tensors the base already holds, and the ops that rebuild the target exactly. */
export function planDelta(base: Uint8Array, target: Uint8Array): DeltaPlan {
  const have = new Set(hashTensors(base).map((t) => t.sha256));
  const reused: HashedTensor[] = [];
  const shipped: HashedTensor[] = [];
  const ops: DeltaOp[] = [];
  const parts: Uint8Array[] = [];
  let literalBytes = 0;
  const literal = (from: number, to: number) => {
    if (to <= from) return;
    const last = ops[ops.length - 1];
    // Adjacent literal ranges merge into one op (skeleton bytes around a shipped tensor).
    if (last && last[0] === "l" && last[1] + last[2] === literalBytes) last[2] += to - from;
    else ops.push(["l", literalBytes, to - from]);
    parts.push(target.subarray(from, to));
    literalBytes += to - from;
  };
  let pos = 0;
  for (const t of hashTensors(target)) {
    literal(pos, t.offset);
    if (have.has(t.sha256)) {
      reused.push(t);
      ops.push(["r", t.sha256, t.length]);
    } else {
      shipped.push(t);
      literal(t.offset, t.offset + t.length);
    }
    pos = t.offset + t.length;
  }
  literal(pos, target.length);
  return { reused, shipped, ops, literal: Buffer.concat(parts) };
}

/** Builds the delta artifact: model delta plus the target bundle's other files, literal. */
export function encodeDelta(input: {
  baseModel: Uint8Array;
  targetModel: Uint8Array;
  files?: ReadonlyArray<{ path: string; bytes: Uint8Array }>;
}): { bytes: Buffer; plan: DeltaPlan } {
  const plan = planDelta(input.baseModel, input.targetModel);
  const fileParts: DeltaHeader["files"] = [];
  const chunks: Uint8Array[] = [plan.literal];
  let offset = plan.literal.length;
  for (const f of input.files ?? []) {
    fileParts.push({ path: f.path, offset, length: f.bytes.length });
    chunks.push(f.bytes);
    offset += f.bytes.length;
  }
  const raw = Buffer.concat(chunks);
  // Quality 5: the skeleton (names, shapes, attributes) compresses well; random weights do not, and
  // higher qualities cost seconds on a 10 MB model for under a percent more.
  const squeezed = brotliCompressSync(raw, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 5 } });
  const useBrotli = squeezed.length <= raw.length * (1 - COMPRESS_MIN_SAVING);
  const header: DeltaHeader = {
    format: DELTA_FORMAT,
    base: { sha256: sha256Hex(input.baseModel), size: input.baseModel.length },
    target: { sha256: sha256Hex(input.targetModel), size: input.targetModel.length },
    ops: plan.ops,
    files: fileParts,
    payload: { encoding: useBrotli ? "brotli" : "none", rawBytes: raw.length },
  };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(headerBytes.length);
  return { bytes: Buffer.concat([DELTA_MAGIC, len, headerBytes, useBrotli ? squeezed : raw]), plan };
}

export interface DecodedDelta {
  header: DeltaHeader;
  /** The inflated payload. */
  payload: Buffer;
}

function invalid(message: string): EdgeFleetError {
  return new EdgeFleetError("DELTA_INVALID", message);
}

/** Parses and bounds-checks a delta artifact (untrusted bytes until its signed hash was checked). */
export function decodeDelta(bytes: Uint8Array): DecodedDelta {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 12 || !buf.subarray(0, 8).equals(DELTA_MAGIC)) throw invalid("not a delta (bad magic)");
  const headerLen = buf.readUInt32BE(8);
  if (headerLen > MAX_DELTA_HEADER || 12 + headerLen > buf.length) throw invalid("delta header length out of range");
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(12, 12 + headerLen).toString("utf8"));
  } catch {
    throw invalid("delta header is not JSON");
  }
  const header = DeltaHeaderSchema.safeParse(parsed);
  if (!header.success) throw invalid(`delta header: ${header.error.issues[0]?.message ?? "invalid"}`);
  const h = header.data;
  const body = buf.subarray(12 + headerLen);
  let payload: Buffer;
  try {
    payload =
      h.payload.encoding === "brotli"
        ? brotliDecompressSync(body, { maxOutputLength: Math.max(1, h.payload.rawBytes) })
        : Buffer.from(body);
  } catch {
    throw invalid("delta payload does not inflate within its declared size");
  }
  if (payload.length !== h.payload.rawBytes) throw invalid("delta payload size differs from its header");
  for (const f of h.files) {
    if (f.offset + f.length > payload.length) throw invalid(`delta file ${f.path} lies outside the payload`);
  }
  return { header: h, payload };
}

/**
 * Rebuilds the target model from the base model's bytes and a decoded delta. Checks the base against the
 * header and the result against the header's target hash; the caller still checks the result against the
 * release-signed SHA-256 of the target manifest (the header is only as trusted as the director's signature).
 */
export function applyDelta(baseModel: Uint8Array, delta: DecodedDelta): Buffer {
  const { header, payload } = delta;
  if (baseModel.length !== header.base.size || sha256Hex(baseModel) !== header.base.sha256) {
    throw new EdgeFleetError("DELTA_BASE_MISMATCH", "the device's base model is not the one the delta was built on");
  }
  const total = header.ops.reduce((a, op) => a + op[2], 0);
  if (total !== header.target.size) throw invalid(`delta ops give ${total} bytes, target has ${header.target.size}`);
  const tensors = new Map<string, Uint8Array>();
  for (const t of hashTensors(baseModel)) {
    tensors.set(t.sha256, baseModel.subarray(t.offset, t.offset + t.length));
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const op of header.ops) {
    if (op[0] === "l") {
      if (op[1] + op[2] > payload.length) throw invalid("delta literal range outside the payload");
      payload.copy(out, pos, op[1], op[1] + op[2]);
    } else {
      const src = tensors.get(op[1]);
      if (!src || src.length !== op[2]) throw invalid(`delta references tensor ${op[1]} the base lacks`);
      out.set(src, pos);
    }
    pos += op[2];
  }
  if (sha256Hex(out) !== header.target.sha256) {
    throw new EdgeFleetError("DELTA_RESULT_MISMATCH", "the rebuilt model does not hash to the delta's target");
  }
  return out;
}

/** One of the delta's literal files. */
export function deltaFile(delta: DecodedDelta, path: string): Buffer | null {
  const f = delta.header.files.find((x) => x.path === path);
  return f ? delta.payload.subarray(f.offset, f.offset + f.length) : null;
}
