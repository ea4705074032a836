import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DatatypeSchema } from "../../shared/schemas/common.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

type Scalar = number | boolean | string;

/**
 * Caps on what one local request may make us allocate or recurse into (issue 7, agent surface):
 * tensors have at most 8 dimensions in every model we ship, so 32 levels of nesting is generous;
 * 16M elements is 64 MiB of float32, beyond the socket's 16 MiB body limit in JSON anyway.
 */
export const MAX_DATA_DEPTH = 32;
export const MAX_TENSOR_ELEMENTS = 16 * 1024 * 1024;
export const MAX_INPUTS = 64;

/**
 * Open Inference Protocol `data`: row-major, either flat or nested arrays (v2 allows both).
 * Flattens depth-first; rejects objects, nulls and ragged nesting depth (a mix of arrays and scalars at one level).
 * Pure; unit-tested.
 */
export function flattenData(data: unknown, name: string): Scalar[] {
  if (!Array.isArray(data)) {
    // A bare scalar is a valid rank-0 payload for some clients.
    if (typeof data === "number" || typeof data === "boolean" || typeof data === "string") return [data];
    throw new EdgeFleetError("INVALID_TENSOR", `input "${name}": data must be an array`);
  }
  // Fast path (issue 13, JSON path): a flat array of numbers — what every client of a small model
  // sends — is already the flattened form. Handed on as it is: nothing downstream writes to it.
  if (data.length <= MAX_TENSOR_ELEMENTS && isFlatNumbers(data)) return data as number[];
  const out: Scalar[] = [];
  const walk = (level: unknown[], depth: number): void => {
    if (depth > MAX_DATA_DEPTH) {
      throw new EdgeFleetError("INVALID_TENSOR", `input "${name}": data nested deeper than ${MAX_DATA_DEPTH}`);
    }
    if (out.length + level.length > MAX_TENSOR_ELEMENTS) {
      throw new EdgeFleetError("INVALID_TENSOR", `input "${name}": more than ${MAX_TENSOR_ELEMENTS} elements`);
    }
    let arrays = 0;
    for (const v of level) {
      if (Array.isArray(v)) {
        arrays++;
        walk(v, depth + 1);
      } else if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") out.push(v);
      else
        throw new EdgeFleetError(
          "INVALID_TENSOR",
          `input "${name}": data element at depth ${depth} is ${v === null ? "null" : typeof v}`,
        );
    }
    if (arrays > 0 && arrays !== level.length) {
      throw new EdgeFleetError("INVALID_TENSOR", `input "${name}": data mixes arrays and scalars at depth ${depth}`);
    }
  };
  walk(data, 0);
  return out;
}

function isFlatNumbers(data: unknown[]): boolean {
  for (let i = 0; i < data.length; i++) if (typeof data[i] !== "number") return false;
  return true;
}

const ParametersSchema = z.record(z.string(), z.unknown()).optional();

export const V2InputSchema = z.object({
  name: z.string().min(1),
  shape: z.array(z.number().int().min(0)),
  datatype: DatatypeSchema,
  // Absent when the tensor travels as binary data (`parameters.binary_data_size`).
  data: z.unknown().optional(),
  parameters: ParametersSchema,
});

export const V2InferRequestSchema = z.object({
  id: z.string().max(256).optional(),
  parameters: ParametersSchema,
  inputs: z.array(V2InputSchema).min(1).max(MAX_INPUTS),
  outputs: z.array(z.object({ name: z.string().min(1), parameters: ParametersSchema })).optional(),
});
export type V2InferRequest = z.infer<typeof V2InferRequestSchema>;

const DATATYPES = new Set<string>(DatatypeSchema.options);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isName = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isShape = (v: unknown): v is number[] => Array.isArray(v) && v.every((d) => Number.isInteger(d) && d >= 0);
const KNOWN_REQUEST = new Set(["id", "parameters", "inputs", "outputs"]);
const KNOWN_INPUT = new Set(["name", "shape", "datatype", "data", "parameters"]);

/**
 * `V2InferRequestSchema` compiled by hand for bodies that conform exactly (issue 13, JSON path: zod's
 * object walk, with its copies of every level, was ~14 µs of a small model's request). Returns what zod
 * would, or null for anything it does not recognise — unknown keys included — which then goes through
 * zod for the precise error (or zod's own stripping). Never accepts what zod refuses. Pure.
 */
export function quickInferRequest(body: unknown): V2InferRequest | null {
  if (!isRecord(body)) return null;
  for (const k in body) if (!KNOWN_REQUEST.has(k)) return null;
  const { id, parameters, inputs, outputs } = body;
  if (id !== undefined && (typeof id !== "string" || id.length > 256)) return null;
  if (parameters !== undefined && !isRecord(parameters)) return null;
  if (!Array.isArray(inputs) || inputs.length < 1 || inputs.length > MAX_INPUTS) return null;
  const outInputs: V2InferRequest["inputs"] = [];
  for (const input of inputs) {
    if (!isRecord(input)) return null;
    for (const k in input) if (!KNOWN_INPUT.has(k)) return null;
    if (!isName(input.name) || !isShape(input.shape)) return null;
    if (typeof input.datatype !== "string" || !DATATYPES.has(input.datatype)) return null;
    if (input.parameters !== undefined && !isRecord(input.parameters)) return null;
    const i: V2InferRequest["inputs"][number] = {
      name: input.name,
      shape: input.shape,
      datatype: input.datatype as V2InferRequest["inputs"][number]["datatype"],
    };
    if (input.data !== undefined) i.data = input.data;
    if (input.parameters !== undefined) i.parameters = input.parameters;
    outInputs.push(i);
  }
  const out: V2InferRequest = { inputs: outInputs };
  if (id !== undefined) out.id = id;
  if (parameters !== undefined) out.parameters = parameters;
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) return null;
    const outs: NonNullable<V2InferRequest["outputs"]> = [];
    for (const o of outputs) {
      if (!isRecord(o) || !isName(o.name)) return null;
      for (const k in o) if (k !== "name" && k !== "parameters") return null;
      if (o.parameters !== undefined && !isRecord(o.parameters)) return null;
      outs.push(o.parameters === undefined ? { name: o.name } : { name: o.name, parameters: o.parameters });
    }
    out.outputs = outs;
  }
  return out;
}

export interface ParsedInferBody {
  id?: string;
  inputs: Record<string, JsonTensor>;
  outputs?: string[];
}

/** Request body → runtime inputs. Schema problems are BAD_REQUEST, tensor problems INVALID_TENSOR (both 400). */
export function parseInferBody(body: unknown): ParsedInferBody {
  const parsed = V2InferRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
    throw new EdgeFleetError("BAD_REQUEST", `invalid inference request: ${issues.join("; ")}`, { details: { issues } });
  }
  const inputs: Record<string, JsonTensor> = {};
  for (const input of parsed.data.inputs) {
    const declared = input.shape.reduce((a, b) => a * b, 1);
    if (input.shape.length > MAX_DATA_DEPTH || declared > MAX_TENSOR_ELEMENTS) {
      throw new EdgeFleetError("INVALID_TENSOR", `input "${input.name}": shape over the element cap`);
    }
    if (inputs[input.name]) throw new EdgeFleetError("INVALID_TENSOR", `input "${input.name}" given twice`);
    inputs[input.name] = { datatype: input.datatype, shape: input.shape, data: flattenData(input.data, input.name) };
  }
  const result: ParsedInferBody = { inputs };
  if (parsed.data.id !== undefined) result.id = parsed.data.id;
  if (parsed.data.outputs) result.outputs = parsed.data.outputs.map((o) => o.name);
  return result;
}
