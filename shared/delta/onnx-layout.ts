import { sha256Hex } from "../hash.js";

/**
 * Where each tensor's `raw_data` lies inside an ONNX file, read from the protobuf wire format directly.
 *
 * Why not decode with onnx-proto and re-encode: re-encoding is not byte-identical to what exporters wrote
 * (measured on PP-OCRv4 rec: 10,822,401 bytes re-encoded vs 10,822,323 on disk; field order, packed vs
 * unpacked repeats and default values differ), and the agent must reproduce the target file exactly to
 * check it against its release-signed SHA-256. Locating byte ranges in the original file makes the delta
 * exact by construction: the target is a list of ranges, each either copied from a tensor the device
 * already holds (addressed by SHA-256) or shipped literally.
 *
 * Tensors are found where weights live in practice: graph initializers and the `value` tensor of
 * Constant nodes (paddle2onnx exports, e.g. PP-OCR, hold every weight there), including in subgraphs
 * (If/Loop bodies). Anything else (graph structure, tensor headers, typed `float_data`) is "skeleton".
 */
export interface TensorSpan {
  /** Tensor name (TensorProto.name), informative only: tensors are addressed by hash. */
  name: string;
  /** Offset of the raw_data payload in the file. */
  offset: number;
  length: number;
}

/** Tensors smaller than this stay in the skeleton: a reference would cost more than the bytes. */
export const MIN_ADDRESSED_BYTES = 256;

// Field numbers from onnx.proto (stable since IR version 3).
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const NODE_ATTRIBUTE = 5;
const ATTR_T = 5;
const ATTR_G = 6;
const ATTR_TENSORS = 10;
const ATTR_GRAPHS = 11;
const TENSOR_NAME = 8;
const TENSOR_RAW_DATA = 9;
/** Protobuf nesting the walker follows at most (graphs in attributes in nodes in graphs ...). */
const MAX_DEPTH = 32;

interface Field {
  field: number;
  wireType: number;
  /** For length-delimited fields: the payload's start and end. */
  start: number;
  end: number;
}

class WireError extends Error {}

function readVarint(buf: Uint8Array, pos: number): [value: number, next: number] {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new WireError("truncated varint");
    const b = buf[pos++] as number;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return [value, pos];
    mul *= 128;
  }
  throw new WireError("varint too long");
}

/** The fields of one message occupying buf[start, end). */
function* fields(buf: Uint8Array, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    pos = afterTag;
    if (wireType === 0) {
      pos = readVarint(buf, pos)[1];
      yield { field, wireType, start: pos, end: pos };
    } else if (wireType === 1) {
      pos += 8;
      yield { field, wireType, start: pos, end: pos };
    } else if (wireType === 5) {
      pos += 4;
      yield { field, wireType, start: pos, end: pos };
    } else if (wireType === 2) {
      const [len, afterLen] = readVarint(buf, pos);
      const s = afterLen;
      pos = s + len;
      if (pos > end) throw new WireError("length-delimited field past its message");
      yield { field, wireType, start: s, end: pos };
    } else {
      throw new WireError(`unsupported wire type ${wireType}`);
    }
    if (pos > end) throw new WireError("field past its message");
  }
}

function tensor(buf: Uint8Array, start: number, end: number, out: TensorSpan[]): void {
  let name = "";
  let raw: Field | null = null;
  for (const f of fields(buf, start, end)) {
    if (f.wireType !== 2) continue;
    if (f.field === TENSOR_NAME) name = Buffer.from(buf.subarray(f.start, f.end)).toString("utf8");
    else if (f.field === TENSOR_RAW_DATA) raw = f;
  }
  if (raw && raw.end - raw.start >= MIN_ADDRESSED_BYTES) {
    out.push({ name, offset: raw.start, length: raw.end - raw.start });
  }
}

function graph(buf: Uint8Array, start: number, end: number, out: TensorSpan[], depth: number): void {
  if (depth > MAX_DEPTH) throw new WireError("graphs nested too deeply");
  for (const f of fields(buf, start, end)) {
    if (f.wireType !== 2) continue;
    if (f.field === GRAPH_INITIALIZER) tensor(buf, f.start, f.end, out);
    else if (f.field === GRAPH_NODE) {
      for (const a of fields(buf, f.start, f.end)) {
        if (a.wireType === 2 && a.field === NODE_ATTRIBUTE) attribute(buf, a.start, a.end, out, depth + 1);
      }
    }
  }
}

function attribute(buf: Uint8Array, start: number, end: number, out: TensorSpan[], depth: number): void {
  for (const f of fields(buf, start, end)) {
    if (f.wireType !== 2) continue;
    if (f.field === ATTR_T || f.field === ATTR_TENSORS) tensor(buf, f.start, f.end, out);
    else if (f.field === ATTR_G || f.field === ATTR_GRAPHS) graph(buf, f.start, f.end, out, depth + 1);
  }
}

/**
 * The addressed tensors of an ONNX model, in file order (non-overlapping). Throws `Error` when the bytes are
 * not a well-formed protobuf message; callers map that to their own error code.
 */
export function tensorSpans(model: Uint8Array): TensorSpan[] {
  const out: TensorSpan[] = [];
  try {
    for (const f of fields(model, 0, model.length)) {
      if (f.wireType === 2 && f.field === MODEL_GRAPH) graph(model, f.start, f.end, out, 0);
    }
  } catch (err) {
    if (err instanceof WireError) throw new Error(`not a well-formed ONNX model: ${err.message}`);
    throw err;
  }
  return out.sort((a, b) => a.offset - b.offset);
}

export interface HashedTensor extends TensorSpan {
  sha256: string;
}

/** The model split into its addressed tensors (by SHA-256 of their bytes); the rest is the skeleton. */
export function hashTensors(model: Uint8Array): HashedTensor[] {
  return tensorSpans(model).map((s) => ({ ...s, sha256: sha256Hex(model.subarray(s.offset, s.offset + s.length)) }));
}
