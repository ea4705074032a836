import { brotliCompressSync, brotliDecompressSync, constants } from "node:zlib";
import { z } from "zod";
import { EdgeFleetError } from "./errors.js";
import { type Datatype, DatatypeSchema } from "./schemas/common.js";
import {
  type JsonTensor,
  JsonTensorSchema,
  type Sample,
  type SamplesFile,
  SamplesFileSchema,
  ToleranceSchema,
} from "./schemas/tensor.js";
import {
  ELEMENT_WIDTH,
  elementCount,
  jsonToRaw,
  ortTypeOf,
  type RawTensor,
  rawToJson,
  typedArrayOver,
} from "./tensors.js";

/**
 * Lean smoke-test samples (issue 23, "Lean bundles"). `samples.json` stays the bundle's sample file
 * (architecture.md §2) but, as written by the server, holds only an index: each tensor's datatype,
 * shape and place in `samples.bin`, a brotli stream of the tensors' raw little-endian bytes. Before
 * this, an image model's two samples as JSON text (13.7 MB) outweighed the model (10.8 MB).
 *
 * Each tensor is stored as byte planes (byte 0 of every element, then byte 1, …): the exponent bytes of
 * floats that vary little then sit together, which brotli compresses far better than interleaved bytes.
 * BYTES tensors (strings) have no fixed width and stay inline in the index as JSON.
 *
 * The inline form (`{ samples: [{ inputs: { x: { datatype, shape, data } } … }] }`) is still read, so
 * hand-written and older bundles keep working. Decoding checks everything it is given: the blob's
 * decompressed size is bounded by the index before it is inflated, and every tensor's slice must match
 * its shape and lie inside the blob.
 */

export const SAMPLES_BLOB_FILE = "samples.bin";
export const SAMPLES_BLOB_ENCODING = "brotli-byte-planes-v1";

/** Raw bytes a decoded blob may hold: far above any cap the server applies, far below what hurts a device. */
const MAX_BLOB_BYTES = 256 * 1024 * 1024;

const BlobTensorSchema = z.object({
  datatype: DatatypeSchema.exclude(["BYTES"]),
  shape: z.array(z.number().int().min(0)),
  /** Byte offset of this tensor's planes in the decompressed blob. */
  offset: z.number().int().min(0),
});
const IndexedTensorSchema = z.union([JsonTensorSchema, BlobTensorSchema.strict()]);

const IndexedSampleSchema = z.object({
  name: z.string().optional(),
  inputs: z.record(z.string(), IndexedTensorSchema),
  outputs: z.record(z.string(), IndexedTensorSchema),
  tolerance: ToleranceSchema.default({ abs: 1e-4, rel: 1e-3 }),
});

export const SamplesIndexSchema = z.object({
  encoding: z.literal(SAMPLES_BLOB_ENCODING),
  /** Decompressed size of samples.bin in bytes (bounds the inflation before it starts). */
  rawBytes: z.number().int().min(0).max(MAX_BLOB_BYTES),
  samples: z.array(IndexedSampleSchema).min(1).max(64),
});
export type SamplesIndex = z.infer<typeof SamplesIndexSchema>;

export interface EncodedSamples {
  index: SamplesIndex;
  /** Contents of samples.bin. */
  blob: Buffer;
  /**
   * Samples left out to stay within the cap. Not written into the index: a re-release decodes and
   * re-encodes the kept samples and must get the same bytes.
   */
  omitted: number;
}

/** The cap on samples.bin: the larger of 1 MiB and 5 % of the model (issue 23). */
export function sampleBudgetBytes(modelBytes: number): number {
  return Math.max(1024 * 1024, Math.floor(modelBytes * 0.05));
}

function planes(raw: RawTensor, width: number): Buffer {
  const d = raw.data as ArrayBufferView;
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const n = bytes.length / width;
  const out = Buffer.allocUnsafe(bytes.length);
  for (let b = 0; b < width; b++) for (let i = 0; i < n; i++) out[b * n + i] = bytes[i * width + b]!;
  return out;
}

const compress = (raw: Buffer): Buffer =>
  brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 5,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });

/**
 * Encodes samples into an index and a blob, keeping samples in order while the compressed blob fits
 * `capBytes`. The first sample is always kept (the smoke test needs one); when it alone is over the cap
 * the bundle is larger than the cap rather than untested. Pure and deterministic: the same samples give
 * the same bytes, so a re-release can check its files did not change.
 */
export function encodeSamples(file: SamplesFile, capBytes: number): EncodedSamples {
  const parts: Buffer[] = [];
  let offset = 0;
  const kept: SamplesIndex["samples"] = [];
  let blob = compress(Buffer.alloc(0));
  for (const sample of file.samples) {
    const partsBefore = parts.length;
    const offsetBefore = offset;
    const put = (tensors: Sample["inputs"]) => {
      const out: SamplesIndex["samples"][number]["inputs"] = {};
      for (const [name, t] of Object.entries(tensors)) {
        if (t.datatype === "BYTES") {
          out[name] = t;
          continue;
        }
        const buf = planes(jsonToRaw(name, t), ELEMENT_WIDTH[t.datatype]);
        out[name] = { datatype: t.datatype, shape: [...t.shape], offset };
        parts.push(buf);
        offset += buf.length;
      }
      return out;
    };
    const entry = { ...sample, inputs: put(sample.inputs), outputs: put(sample.outputs) };
    const candidate = compress(Buffer.concat(parts));
    if (kept.length > 0 && candidate.length > capBytes) {
      parts.length = partsBefore;
      offset = offsetBefore;
      break;
    }
    kept.push(entry);
    blob = candidate;
  }
  const index: SamplesIndex = {
    encoding: SAMPLES_BLOB_ENCODING,
    rawBytes: offset,
    samples: kept,
  };
  return { index, blob, omitted: file.samples.length - kept.length };
}

const invalid = (message: string) => new EdgeFleetError("BUNDLE_SAMPLES_INVALID", message);

/**
 * Parses a bundle's `samples.json` text and, for the indexed form, its `samples.bin` (read through
 * `readBlob`, called only then) into the inline form the smoke test runs. Any malformation is
 * BUNDLE_SAMPLES_INVALID with what was wrong.
 */
export async function decodeSamples(json: string, readBlob: () => Promise<Buffer>): Promise<SamplesFile> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw invalid(`samples.json is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || !("encoding" in parsed)) {
    const inline = SamplesFileSchema.safeParse(parsed);
    if (!inline.success) throw invalid(`samples.json: ${inline.error.issues[0]?.message ?? "invalid"}`);
    return inline.data;
  }
  const idx = SamplesIndexSchema.safeParse(parsed);
  if (!idx.success) {
    const issue = idx.error.issues[0];
    throw invalid(`samples.json index: ${issue?.path.join(".") ?? ""} ${issue?.message ?? "invalid"}`);
  }
  const { rawBytes, samples } = idx.data;
  let raw: Buffer;
  try {
    // maxOutputLength stops a small blob from inflating past what the index declared.
    raw = brotliDecompressSync(await readBlob(), { maxOutputLength: Math.max(rawBytes, 1) });
  } catch (err) {
    throw invalid(`${SAMPLES_BLOB_FILE}: ${(err as Error).message}`);
  }
  if (raw.length !== rawBytes) throw invalid(`${SAMPLES_BLOB_FILE}: ${raw.length} bytes, index says ${rawBytes}`);
  const take = (where: string, tensors: SamplesIndex["samples"][number]["inputs"]) => {
    const out: Record<string, JsonTensor> = {};
    for (const [name, t] of Object.entries(tensors)) {
      if (!("offset" in t)) {
        out[name] = t;
        continue;
      }
      const width = ELEMENT_WIDTH[t.datatype];
      const length = elementCount(t.shape) * width;
      if (t.offset + length > raw.length) {
        throw invalid(`${where}.${name}: bytes ${t.offset}..${t.offset + length} lie outside ${SAMPLES_BLOB_FILE}`);
      }
      out[name] = rawToJson(unplane(raw.subarray(t.offset, t.offset + length), t.datatype, t.shape, width));
    }
    return out;
  };
  return {
    samples: samples.map((s, i) => ({
      ...s,
      inputs: take(`samples[${i}].inputs`, s.inputs),
      outputs: take(`samples[${i}].outputs`, s.outputs),
    })),
  };
}

/** Byte planes back to interleaved little-endian elements, as a typed tensor (one copy). */
function unplane(src: Buffer, datatype: Exclude<Datatype, "BYTES">, shape: number[], width: number): RawTensor {
  const n = src.length / width;
  const bytes = new Uint8Array(src.length);
  for (let b = 0; b < width; b++) for (let i = 0; i < n; i++) bytes[i * width + b] = src[b * n + i]!;
  return { type: ortTypeOf(datatype), dims: [...shape], data: typedArrayOver(datatype, bytes.buffer, 0, n) };
}

/** A bundle's samples, given a reader of its files by name (plain or hash-verified, as the caller needs). */
export async function readBundleSamples(read: (file: string) => Promise<Buffer>): Promise<SamplesFile> {
  return decodeSamples((await read("samples.json")).toString("utf8"), () => read(SAMPLES_BLOB_FILE));
}
