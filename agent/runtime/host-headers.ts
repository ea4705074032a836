import { EdgeFleetError, type ErrorJson, isErrorCode } from "../../shared/errors.js";
import type { OrtTensorType } from "../../shared/tensors.js";
import type { HostRunTiming } from "./host-protocol.js";
import type { SequenceStep } from "./host-sequences.js";

/**
 * Headers of the bulk channel's `run` frames (host-protocol.ts), checked field by field. The channel
 * joins two of our own processes, but a header is still checked before use: a corrupt or foreign
 * frame must be a clear error, never a crash. By hand rather than with zod on purpose: this runs
 * twice per inference, and zod's ~10 µs per header (measured, warm) was a visible share of a
 * 0.2 ms model's request (docs/benchmarks.md, issue 13). Pure.
 */
export interface TensorEntry {
  name: string;
  type: OrtTensorType;
  dims: number[];
  offset: number;
  byteLength: number;
}

export interface RunRequestHeader {
  id: number;
  outputs?: string[];
  /** Set when the run is a frame of a sequence (issue 18): the host adds and keeps its state. */
  seq?: SequenceStep;
  tensors: TensorEntry[];
}

export type RunReplyHeader =
  | {
      id: number;
      ok: true;
      computeMs: number;
      /** Host process CPU attributed to this run (ms; model-host-main.ts `cpuSince`); null from a host that sent none. */
      cpuMs: number | null;
      timing: HostRunTiming;
      tensors: TensorEntry[];
    }
  | { id: number; ok: false; error: ErrorJson; tensors: TensorEntry[] };

const TYPES = new Set<string>([
  "bool",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "int8",
  "int16",
  "int32",
  "int64",
  "float16",
  "float32",
  "float64",
  "string",
]);
const MAX_TENSORS = 1024;
const MAX_DIMS = 64;

const bad = (what: string) => new EdgeFleetError("INTERNAL", `model host channel: ${what}`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function isDims(d: unknown): boolean {
  if (!Array.isArray(d) || d.length > MAX_DIMS) return false;
  for (let i = 0; i < d.length; i++) if (!isCount(d[i])) return false;
  return true;
}

function id(h: Record<string, unknown>): number {
  if (!isCount(h.id) || h.id < 1) throw bad("frame header without a valid id");
  return h.id;
}

export function parseTensorEntries(v: unknown): TensorEntry[] {
  if (!Array.isArray(v) || v.length > MAX_TENSORS) throw bad(`"tensors" must be an array of at most ${MAX_TENSORS}`);
  // Indexed loops, not entries()/every(): this runs on every frame, once per request, mostly cold
  // (issue 13: iterator and callback overhead showed in the frame path's instruction counts).
  for (let i = 0; i < v.length; i++) {
    const e: unknown = v[i];
    if (!isObject(e)) throw bad(`tensors[${i}] is not an object`);
    if (typeof e.name !== "string" || e.name.length === 0) throw bad(`tensors[${i}].name must be a non-empty string`);
    if (typeof e.type !== "string" || !TYPES.has(e.type)) throw bad(`tensors[${i}].type ${String(e.type)} is unknown`);
    if (!isDims(e.dims)) throw bad(`tensors[${i}].dims must be at most ${MAX_DIMS} non-negative integers`);
    if (!isCount(e.offset) || !isCount(e.byteLength)) throw bad(`tensors[${i}] offset/byteLength must be integers ≥ 0`);
  }
  return v as TensorEntry[];
}

export function parseRunRequest(h: unknown): RunRequestHeader {
  if (!isObject(h)) throw bad("run request header is not an object");
  const out: RunRequestHeader = { id: id(h), tensors: parseTensorEntries(h.tensors) };
  if (h.outputs !== undefined) {
    if (!Array.isArray(h.outputs) || !h.outputs.every((o) => typeof o === "string")) {
      throw bad('"outputs" must be an array of names');
    }
    out.outputs = h.outputs as string[];
  }
  if (h.seq !== undefined) {
    const q = h.seq;
    if (!isObject(q) || typeof q.id !== "string" || typeof q.start !== "boolean" || typeof q.end !== "boolean") {
      throw bad('"seq" must be { id: string, start: boolean, end: boolean }');
    }
    out.seq = { id: q.id, start: q.start, end: q.end };
  }
  return out;
}

export function parseRunReply(h: unknown): RunReplyHeader {
  if (!isObject(h)) throw bad("run reply header is not an object");
  const replyId = id(h);
  if (h.ok === false) {
    const e = h.error;
    if (!isObject(e) || typeof e.code !== "string" || typeof e.message !== "string") {
      throw bad("error reply without code and message");
    }
    if (!isErrorCode(e.code)) throw bad(`error reply with unknown code ${JSON.stringify(e.code.slice(0, 64))}`);
    const error: ErrorJson = {
      code: e.code,
      message: e.message,
      ...(e.details !== undefined ? { details: e.details } : {}),
    };
    return { id: replyId, ok: false, error, tensors: [] };
  }
  if (h.ok !== true) throw bad('run reply header without "ok"');
  const t = h.timing;
  if (typeof h.computeMs !== "number" || !isObject(t)) throw bad("run reply without computeMs and timing");
  // Named loads, not a loop over key names (keyed loads stay generic in optimized code).
  if (typeof t.received !== "number") throw bad("run reply timing.received is not a number");
  if (typeof t.ortStart !== "number") throw bad("run reply timing.ortStart is not a number");
  if (typeof t.ortEnd !== "number") throw bad("run reply timing.ortEnd is not a number");
  if (typeof t.replying !== "number") throw bad("run reply timing.replying is not a number");
  // Optional on the wire (issue 22 added it); when present it must be a usable CPU figure.
  const cpuMs = h.cpuMs;
  if (cpuMs !== undefined && (typeof cpuMs !== "number" || !Number.isFinite(cpuMs) || cpuMs < 0)) {
    throw bad("run reply cpuMs is not a number ≥ 0");
  }
  return {
    id: replyId,
    ok: true,
    computeMs: h.computeMs,
    cpuMs: cpuMs ?? null,
    timing: { received: t.received, ortStart: t.ortStart, ortEnd: t.ortEnd, replying: t.replying },
    tensors: parseTensorEntries(h.tensors),
  };
}
