import { EdgeFleetError } from "../../shared/errors.js";

/**
 * Finds every tensor of an ONNX model that keeps its bytes outside the protobuf (`data_location:
 * EXTERNAL` or `external_data` entries): onnxruntime would open `location` relative to the model's
 * directory, so `../../../etc/passwd` or an absolute path reads any file the agent can read.
 * A tiny protobuf walk (no decoder library, no copies of weight bytes): ModelProto → graphs,
 * functions, nodes, attributes (subgraphs included), initializers and sparse tensors. Pure.
 */

export interface ExternalTensor {
  /** The tensor's name (may be empty for attribute tensors). */
  name: string;
  /** The `location` entry of `external_data`, or null when missing. */
  location: string | null;
}

/** Nesting cap for subgraphs (If/Loop bodies inside bodies): far beyond any real model. */
const MAX_DEPTH = 64;
const EXTERNAL = 1; // TensorProto.DataLocation.EXTERNAL

type Wire = 0 | 1 | 2 | 5;
interface Field {
  no: number;
  wire: Wire;
  /** Varint value (wire 0), or the bytes of a length-delimited field (wire 2). */
  varint: number;
  bytes: Uint8Array;
}

const invalid = (why: string) =>
  new EdgeFleetError("MODEL_LOAD_FAILED", `model.onnx is not a valid ONNX protobuf: ${why}`);

function readVarint(buf: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at + i >= buf.length) throw invalid("truncated varint");
    const b = buf[at + i]!;
    // Values beyond 2^53 only appear in fields we skip (int64 data); precision does not matter there.
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return { value, next: at + i + 1 };
  }
  throw invalid("varint longer than 10 bytes");
}

function* fields(buf: Uint8Array): Generator<Field> {
  let at = 0;
  while (at < buf.length) {
    const key = readVarint(buf, at);
    at = key.next;
    const no = Math.floor(key.value / 8);
    const wire = key.value % 8;
    if (no === 0) throw invalid("field number 0");
    if (wire === 0) {
      const v = readVarint(buf, at);
      at = v.next;
      yield { no, wire, varint: v.value, bytes: EMPTY };
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
      if (at > buf.length) throw invalid("truncated fixed-width field");
    } else if (wire === 2) {
      const len = readVarint(buf, at);
      at = len.next;
      if (at + len.value > buf.length) throw invalid("length-delimited field runs past the end");
      yield { no, wire, varint: 0, bytes: buf.subarray(at, at + len.value) };
      at += len.value;
    } else if (wire === 3) {
      at = skipGroup(buf, at, no); // deprecated groups: protobuf parsers skip them in unknown fields
    } else {
      throw invalid(`unexpected wire type ${wire}`);
    }
  }
}

/** Skips a (possibly nested) group started by field `no`; returns the offset after its end tag. */
function skipGroup(buf: Uint8Array, start: number, no: number): number {
  const open = [no];
  let at = start;
  while (open.length > 0) {
    if (open.length > MAX_DEPTH) throw invalid("groups nested too deep");
    const key = readVarint(buf, at);
    at = key.next;
    const wire = key.value % 8;
    const n = Math.floor(key.value / 8);
    if (wire === 0) at = readVarint(buf, at).next;
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const len = readVarint(buf, at);
      at = len.next + len.value;
    } else if (wire === 3) open.push(n);
    else if (wire === 4 && open[open.length - 1] === n) open.pop();
    else throw invalid("unbalanced group");
    if (at > buf.length) throw invalid("truncated group");
  }
  return at;
}

const EMPTY = new Uint8Array(0);
const utf8 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");

function tensor(buf: Uint8Array, out: ExternalTensor[]): void {
  let name = "";
  let location: string | null = null;
  let external = false;
  for (const f of fields(buf)) {
    if (f.no === 8 && f.wire === 2) name = utf8(f.bytes);
    else if (f.no === 14 && f.wire === 0 && f.varint === EXTERNAL) external = true;
    else if (f.no === 13 && f.wire === 2) {
      external = true;
      let key = "";
      let value = "";
      for (const e of fields(f.bytes)) {
        if (e.wire !== 2) continue;
        if (e.no === 1) key = utf8(e.bytes);
        else if (e.no === 2) value = utf8(e.bytes);
      }
      if (key === "location") location = value;
    }
  }
  if (external) out.push({ name, location });
}

function sparse(buf: Uint8Array, out: ExternalTensor[]): void {
  for (const f of fields(buf)) if (f.wire === 2 && (f.no === 1 || f.no === 2)) tensor(f.bytes, out);
}

function attribute(buf: Uint8Array, out: ExternalTensor[], depth: number): void {
  for (const f of fields(buf)) {
    if (f.wire !== 2) continue;
    if (f.no === 5 || f.no === 10) tensor(f.bytes, out);
    else if (f.no === 6 || f.no === 11) graph(f.bytes, out, depth + 1);
    else if (f.no === 22 || f.no === 23) sparse(f.bytes, out);
  }
}

function nodeProto(buf: Uint8Array, out: ExternalTensor[], depth: number): void {
  for (const f of fields(buf)) if (f.no === 5 && f.wire === 2) attribute(f.bytes, out, depth);
}

function graph(buf: Uint8Array, out: ExternalTensor[], depth: number): void {
  if (depth > MAX_DEPTH)
    throw new EdgeFleetError("BUNDLE_UNSAFE_ENTRY", `model.onnx nests subgraphs beyond ${MAX_DEPTH} levels`);
  for (const f of fields(buf)) {
    if (f.wire !== 2) continue;
    if (f.no === 1) nodeProto(f.bytes, out, depth);
    else if (f.no === 5) tensor(f.bytes, out);
    else if (f.no === 15) sparse(f.bytes, out);
  }
}

/** Every tensor with external data, anywhere in the model (main graph, subgraphs, functions). */
export function findExternalData(model: Uint8Array): ExternalTensor[] {
  const out: ExternalTensor[] = [];
  for (const f of fields(model)) {
    if (f.wire !== 2) continue;
    if (f.no === 7) graph(f.bytes, out, 0);
    else if (f.no === 25) for (const g of fields(f.bytes)) if (g.no === 7 && g.wire === 2) nodeProto(g.bytes, out, 0);
  }
  return out;
}

/**
 * Refuses a model whose external data is anything but a file the signed manifest lists (hashed and
 * size-checked like the model itself): `../`, absolute paths, or any unlisted name → BUNDLE_UNSAFE_ENTRY.
 */
export function checkExternalData(model: Uint8Array, listed: ReadonlySet<string>): void {
  for (const t of findExternalData(model)) {
    if (t.location === null || !listed.has(t.location)) {
      throw new EdgeFleetError(
        "BUNDLE_UNSAFE_ENTRY",
        `model.onnx tensor ${JSON.stringify(t.name)} has external data at ${JSON.stringify(t.location)}, not a file of the bundle`,
        { details: { tensor: t.name, location: t.location } },
      );
    }
  }
}
