import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * The onnx-proto runtime namespace. The package is CommonJS, so under Node's ESM loader only
 * its default export exists; `import { onnx } from "onnx-proto"` fails at run time.
 */
export const proto: typeof onnx = onnxProto.onnx;

export type ModelProto = onnx.IModelProto;
export type GraphProto = onnx.IGraphProto;
export type NodeProto = onnx.INodeProto;
export type TensorProto = onnx.ITensorProto;
export type AttributeProto = onnx.IAttributeProto;

/** TensorProto.DataType values we read or write (onnx.proto). */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7 } as const;
/** AttributeProto.AttributeType values (onnx.proto). */
export const AT = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, INTS: 7, GRAPHS: 10 } as const;

/** protobufjs decodes int64 as Long when the `long` package is present; dims never exceed 2^53. */
export function num(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === "number" ? v : v.toNumber();
}

/**
 * Decodes an uploaded file as an ONNX ModelProto with precise refusals: not protobuf at all,
 * truncated, no graph, or weights stored outside the file (external data can't travel in a
 * one-file bundle, and resolving its paths on the server would read arbitrary files).
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  if (bytes.length === 0) throw loadError("the file is empty, not an ONNX model", "empty");
  let model: onnx.ModelProto;
  try {
    model = proto.ModelProto.decode(bytes);
  } catch (err) {
    const msg = (err as Error).message;
    // Serialized ModelProtos start with field 1 (ir_version, varint): tag byte 0x08. Such a file
    // that runs out of bytes mid-field was cut short; anything else is simply not ONNX.
    const truncated = bytes[0] === 0x08 && /index out of range/i.test(msg);
    throw loadError(
      truncated
        ? `the ONNX protobuf is truncated or corrupt (${msg})`
        : `the file is not an ONNX model: protobuf decoding failed (${msg})`,
      truncated ? "truncated" : "not-onnx",
    );
  }
  if (!model.graph || (model.graph.node ?? []).length === 0 || num(model.irVersion) <= 0) {
    throw loadError("the file is not an ONNX model: it has no IR version or no graph nodes", "not-onnx");
  }
  const external = findExternalData(model.graph);
  if (external) {
    throw loadError(
      `tensor ${external.tensor} references external data (${external.location}); upload a single self-contained .onnx file`,
      "external-data",
      { tensor: external.tensor, location: external.location },
    );
  }
  return model;
}

export function encodeModel(model: ModelProto): Uint8Array {
  return proto.ModelProto.encode(model).finish();
}

function loadError(message: string, reason: string, extra: Record<string, unknown> = {}): EdgeFleetError {
  return new EdgeFleetError("MODEL_LOAD_FAILED", message, { details: { reason, ...extra } });
}

function findExternalData(graph: GraphProto): { tensor: string; location: string } | null {
  const check = (t: TensorProto | null | undefined) => {
    if (!t) return null;
    if (t.dataLocation === 1 || (t.externalData ?? []).length > 0) {
      const loc = (t.externalData ?? []).find((e) => e.key === "location")?.value ?? "unknown location";
      return { tensor: t.name ?? "(unnamed)", location: loc };
    }
    return null;
  };
  for (const t of graph.initializer ?? []) {
    const hit = check(t);
    if (hit) return hit;
  }
  for (const n of graph.node ?? []) {
    for (const a of n.attribute ?? []) {
      const hit = check(a.t) ?? a.tensors?.map(check).find((x) => x !== null) ?? null;
      if (hit) return hit;
      for (const g of subgraphsOfAttr(a)) {
        const sub = findExternalData(g);
        if (sub) return sub;
      }
    }
  }
  return null;
}

export function subgraphsOfAttr(a: AttributeProto): GraphProto[] {
  const out: GraphProto[] = [];
  if (a.g) out.push(a.g);
  for (const g of a.graphs ?? []) out.push(g);
  return out;
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => num(d));
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Float32 contents of a FLOAT tensor, from raw_data (little-endian) or float_data. */
export function readFloats(t: TensorProto): Float32Array {
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    // Copy: decoded raw_data is a view into the file buffer and may be unaligned for Float32Array.
    const copy = new Uint8Array(raw.length);
    copy.set(raw);
    return new Float32Array(copy.buffer, 0, raw.length / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

export function floatTensor(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  return {
    name,
    dims: [...dims],
    dataType: DT.FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

export function int8Tensor(name: string, dims: readonly number[], data: Int8Array): TensorProto {
  return {
    name,
    dims: [...dims],
    dataType: DT.INT8,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  };
}

export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.i === undefined || a.i === null ? fallback : num(a.i);
}

export function floatAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.f === undefined || a.f === null ? fallback : a.f;
}

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  name: string,
  attrs: AttributeProto[] = [],
): NodeProto {
  return { opType, input: inputs, output: outputs, name, attribute: attrs };
}

export const intAttribute = (name: string, i: number): AttributeProto => ({ name, type: AT.INT, i });
export const tensorAttribute = (name: string, t: TensorProto): AttributeProto => ({ name, type: AT.TENSOR, t });

/** Opset of the default ONNX domain ("" or "ai.onnx"). */
export function defaultOpset(model: ModelProto): number | null {
  const imp = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  return imp ? num(imp.version) : null;
}
