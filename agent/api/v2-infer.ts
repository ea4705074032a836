import { EdgeFleetError } from "../../shared/errors.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { datatypeOf, jsonToRaw, type RawTensor, rawToJson } from "../../shared/tensors.js";
import type { ServeResult } from "../serving/serving-layer.js";
import { tensorFromBytes, tensorToBytes } from "./binary-tensors.js";
import { flattenData, quickInferRequest, type V2InferRequest, V2InferRequestSchema } from "./v2-body.js";
import { inputRegion, NO_REGIONS, type OutputRegion, outputRegion, type RegionAccess } from "./v2-shm.js";

/**
 * Open Inference Protocol infer request/response, JSON and binary tensor extension (issue 8). Pure:
 * bytes and objects in, objects and bytes out; the routes do the HTTP.
 */
export interface DecodedInfer {
  id?: string;
  parameters: Record<string, unknown>;
  /** Set when every input came as JSON `data` (keeps the JSON path and its telemetry). */
  json?: Record<string, JsonTensor>;
  /** Set when at least one input came as binary data (then every input is typed). */
  raw?: Record<string, RawTensor>;
  outputs?: string[];
  /** Which outputs go back as binary data. */
  binaryOutput: (name: string) => boolean;
  /** Sticky A/B key from `parameters.ab_key`. */
  abKey?: string;
  /** Outputs the caller asked to receive in a shared-memory region (checked to lie inside it). */
  regionOutputs: Map<string, OutputRegion>;
  /** A frame of a sequence (`sequence_id`, `sequence_start`, `sequence_end`; docs/protocol.md "Sequences"). */
  sequence?: { id: string; start: boolean; end: boolean };
}

/**
 * The parameters we implement, per level, and the type each must have. Anything else is refused with
 * 400 rather than accepted and ignored (issue 20 §7: `outputs[].parameters.classification` and
 * `inputs[].parameters.shared_memory_region` used to answer 200 with the full tensor): a client that
 * asks for an extension must learn at once that it does not get it.
 */
function count(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

const SUPPORTED: Record<"request" | "input" | "output", Record<string, (v: unknown) => boolean>> = {
  request: {
    binary_data_output: (v) => typeof v === "boolean",
    ab_key: (v) => typeof v === "string" || typeof v === "number",
    // Triton's sequence parameters (issue 18); an id is a non-empty string or an integer ≥ 1.
    sequence_id: (v) =>
      (typeof v === "string" && v.length > 0 && v.length <= 256) || (typeof v === "number" && count(v) && v > 0),
    sequence_start: (v) => typeof v === "boolean",
    sequence_end: (v) => typeof v === "boolean",
  },
  input: {
    binary_data_size: count,
    shared_memory_region: (v) => typeof v === "string" && v.length > 0,
    shared_memory_byte_size: count,
    shared_memory_offset: count,
  },
  output: {
    binary_data: (v) => typeof v === "boolean",
    shared_memory_region: (v) => typeof v === "string" && v.length > 0,
    shared_memory_byte_size: count,
    shared_memory_offset: count,
  },
};

/** Throws BAD_REQUEST on a parameter that `where` does not support or one of the wrong type. Pure. */
export function checkParameters(where: string, parameters: Record<string, unknown> | undefined): void {
  if (!parameters) return;
  const level = where === "request" ? "request" : where.startsWith("input") ? "input" : "output";
  const allowed = SUPPORTED[level];
  for (const [name, value] of Object.entries(parameters)) {
    const ok = allowed[name];
    if (!ok) {
      const known = Object.keys(allowed).join(", ");
      throw new EdgeFleetError(
        "BAD_REQUEST",
        `${where}: parameter "${name}" is not supported (supported at this level: ${known})`,
      );
    }
    if (!ok(value)) throw new EdgeFleetError("BAD_REQUEST", `${where}: parameter "${name}" has an invalid value`);
  }
}

const str = (v: unknown) => (typeof v === "string" || typeof v === "number" ? String(v) : undefined);

/** The request as `V2InferRequestSchema` parses it: the hand-compiled check first, zod for the rest. */
function parseRequest(body: unknown): V2InferRequest {
  const quick = quickInferRequest(body);
  if (quick) return quick;
  const parsed = V2InferRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
    throw new EdgeFleetError("BAD_REQUEST", `invalid inference request: ${issues.join("; ")}`, { details: { issues } });
  }
  return parsed.data;
}

/**
 * `regions` resolves shared-memory parameters for the calling uid (v2-shm.ts); without it a request
 * naming a region is refused as naming an unknown one.
 */
export function decodeInferRequest(
  body: unknown,
  binary: Buffer | null,
  regions: RegionAccess = NO_REGIONS,
): DecodedInfer {
  const req = parseRequest(body);
  const parameters = req.parameters ?? {};
  checkParameters("request", parameters);
  for (const input of req.inputs) checkParameters(`input "${input.name}"`, input.parameters);
  for (const output of req.outputs ?? []) checkParameters(`output "${output.name}"`, output.parameters);
  const seen = new Set<string>();
  const json: Record<string, JsonTensor> = {};
  const raw: Record<string, RawTensor> = {};
  let anyBinary = false;
  let at = 0;
  for (const input of req.inputs) {
    if (seen.has(input.name)) throw new EdgeFleetError("INVALID_TENSOR", `input "${input.name}" given twice`);
    seen.add(input.name);
    const region = inputRegion(input, regions);
    const size = input.parameters?.binary_data_size;
    if (region) {
      raw[input.name] = tensorFromBytes(input.name, input.datatype, input.shape, region);
      anyBinary = true;
    } else if (size !== undefined) {
      if (!binary)
        throw new EdgeFleetError(
          "BAD_REQUEST",
          `input "${input.name}" has binary_data_size but the request has no binary part`,
        );
      if (typeof size !== "number" || !Number.isInteger(size) || size < 0 || at + size > binary.length) {
        throw new EdgeFleetError(
          "BAD_REQUEST",
          `input "${input.name}": binary_data_size ${String(size)} exceeds the binary part`,
        );
      }
      if (input.data !== undefined)
        throw new EdgeFleetError("BAD_REQUEST", `input "${input.name}" has both data and binary_data_size`);
      raw[input.name] = tensorFromBytes(input.name, input.datatype, input.shape, binary.subarray(at, at + size));
      at += size;
      anyBinary = true;
    } else {
      if (input.data === undefined) throw new EdgeFleetError("BAD_REQUEST", `input "${input.name}" has no data`);
      json[input.name] = { datatype: input.datatype, shape: input.shape, data: flattenData(input.data, input.name) };
    }
  }
  if (binary && at !== binary.length) {
    throw new EdgeFleetError("BAD_REQUEST", `binary part has ${binary.length - at} bytes no input claims`);
  }
  const allBinary = parameters.binary_data_output === true;
  const explicit = new Map<string, boolean>();
  for (const o of req.outputs ?? []) {
    const b = o.parameters?.binary_data;
    if (typeof b === "boolean") explicit.set(o.name, b);
  }
  const regionOutputs = new Map<string, OutputRegion>();
  for (const o of req.outputs ?? []) {
    const r = outputRegion(o, regions);
    if (r) regionOutputs.set(o.name, r);
  }
  const out: DecodedInfer = {
    parameters,
    binaryOutput: (name) => explicit.get(name) ?? allBinary,
    regionOutputs,
  };
  if (req.id !== undefined) out.id = req.id;
  // An empty `outputs` list means what an absent one does (all outputs), as in Triton; passed on,
  // it reached onnxruntime as an empty fetch list and failed as a server error.
  if (req.outputs && req.outputs.length > 0) out.outputs = req.outputs.map((o) => o.name);
  if (parameters.sequence_id !== undefined) {
    out.sequence = {
      id: String(parameters.sequence_id),
      start: parameters.sequence_start === true,
      end: parameters.sequence_end === true,
    };
  } else if (parameters.sequence_start !== undefined || parameters.sequence_end !== undefined) {
    throw new EdgeFleetError("BAD_REQUEST", "sequence_start/sequence_end need a sequence_id");
  }
  const key = str(parameters.ab_key);
  if (key !== undefined) out.abKey = key;
  if (anyBinary) {
    for (const [n, t] of Object.entries(json)) raw[n] = jsonToRaw(n, t);
    out.raw = raw;
  } else out.json = json;
  return out;
}

export interface EncodedInfer {
  header: Record<string, unknown>;
  /** Binary parts in output order; empty for a pure JSON response. */
  parts: Buffer[];
  /** Outputs to write into shared-memory regions before the reply leaves (the route does the I/O). */
  regionWrites: { name: string; region: OutputRegion; bytes: Buffer }[];
}

/** The v2 response for a served request; outputs in the requested order, else the model's. */
export function encodeInferResponse(res: ServeResult, req: DecodedInfer): EncodedInfer {
  const names = req.outputs ?? Object.keys(res.outputs);
  const parts: Buffer[] = [];
  const regionWrites: EncodedInfer["regionWrites"] = [];
  const outputs = names
    .filter((n) => res.outputs[n] !== undefined)
    .map((name) => {
      const t = res.outputs[name]!;
      const region = req.regionOutputs.get(name);
      if (region) {
        const bytes = tensorToBytes(t);
        regionWrites.push({ name, region, bytes });
        return {
          name,
          datatype: datatypeOf(t.type),
          shape: [...t.dims],
          parameters: { shared_memory_region: region.region, shared_memory_byte_size: bytes.length },
        };
      }
      if (req.binaryOutput(name)) {
        const bytes = tensorToBytes(t);
        parts.push(bytes);
        return {
          name,
          datatype: datatypeOf(t.type),
          shape: [...t.dims],
          parameters: { binary_data_size: bytes.length },
        };
      }
      const j = res.json?.[name] ?? rawToJson(t);
      return { name, datatype: j.datatype, shape: j.shape, data: j.data };
    });
  const header: Record<string, unknown> = { model_name: res.model, model_version: res.version };
  if (req.id !== undefined) header.id = req.id;
  const parameters: Record<string, unknown> = {};
  if (res.arm) parameters.ab_arm = res.arm;
  if (res.cached) parameters.cached = true;
  if (Object.keys(parameters).length > 0) header.parameters = parameters;
  header.outputs = outputs;
  return { header, parts, regionWrites };
}
