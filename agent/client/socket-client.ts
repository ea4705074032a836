import { request } from "node:http";
import type { Datatype } from "../../shared/schemas/common.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { datatypeOf, type RawTensor } from "../../shared/tensors.js";
import { HEADER_LENGTH, joinBody, splitBody, tensorFromBytes, tensorToBytes } from "../api/binary-tensors.js";
import {
  type InferSequence,
  type InferStream,
  openSequence,
  openStream,
  type SequenceOptions,
} from "./stream-client.js";

/**
 * Small typed client for the agent's Unix-socket API (Open Inference Protocol v2 + /v1/status).
 * Used by the demo, the tests and local apps written in TypeScript.
 */
export interface V2InferInput {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

export interface V2InferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  /** `ab_arm` when the model runs an A/B split; `cached` when the response cache answered. */
  parameters?: { ab_arm?: "control" | "candidate"; cached?: boolean; [k: string]: unknown };
  outputs: { name: string; shape: number[]; datatype: string; data: unknown[] }[];
}

export interface InferOptions {
  version?: string;
  outputs?: string[];
  /** Request-level `parameters` (e.g. `ab_key` for a sticky A/B arm). */
  parameters?: Record<string, unknown>;
  id?: string;
}

/** A binary-extension infer answer: outputs as typed tensors. */
export interface BinaryInferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: V2InferResponse["parameters"];
  outputs: Record<string, RawTensor>;
}

export interface UpdateLockInfo {
  id: string;
  holder: string;
  acquiredAt: number;
  expiresAt: number;
}

export class SocketApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    const msg = (body as { error?: string } | null)?.error ?? `HTTP ${status}`;
    super(msg);
    this.name = "SocketApiError";
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export class SocketClient {
  constructor(readonly socketPath: string) {}

  raw(
    method: string,
    path: string,
    body?: Buffer | string,
    headers: Record<string, string> = {},
  ): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      });
      req.on("error", reject);
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const res = await this.raw(
      method,
      path,
      payload,
      payload === undefined
        ? {}
        : { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) },
    );
    let parsed: unknown = null;
    if (res.body.length > 0) {
      try {
        parsed = JSON.parse(res.body.toString("utf8"));
      } catch {
        parsed = { error: res.body.toString("utf8") };
      }
    }
    if (res.status >= 400) throw new SocketApiError(res.status, parsed);
    return parsed as T;
  }

  infer(model: string, inputs: V2InferInput[], opts: InferOptions = {}): Promise<V2InferResponse> {
    const body: Record<string, unknown> = { inputs };
    if (opts.id !== undefined) body.id = opts.id;
    if (opts.parameters) body.parameters = opts.parameters;
    if (opts.outputs) body.outputs = opts.outputs.map((name) => ({ name }));
    return this.json("POST", inferPath(model, opts.version), body);
  }

  /**
   * Infer with the binary tensor extension both ways: inputs travel as raw little-endian bytes after
   * the JSON header, outputs come back the same way (no per-element JSON at either end).
   */
  async inferBinary(
    model: string,
    inputs: Record<string, RawTensor>,
    opts: InferOptions = {},
  ): Promise<BinaryInferResponse> {
    const parts: Buffer[] = [];
    const header: Record<string, unknown> = {
      inputs: Object.entries(inputs).map(([name, t]) => {
        const bytes = tensorToBytes(t);
        parts.push(bytes);
        return { name, shape: t.dims, datatype: datatypeOf(t.type), parameters: { binary_data_size: bytes.length } };
      }),
      parameters: { ...opts.parameters, binary_data_output: true },
    };
    if (opts.id !== undefined) header.id = opts.id;
    if (opts.outputs) header.outputs = opts.outputs.map((name) => ({ name, parameters: { binary_data: true } }));
    const { body, headerLength } = joinBody(header, parts);
    const res = await this.raw("POST", inferPath(model, opts.version), body, {
      "content-type": "application/octet-stream",
      "content-length": String(body.length),
      [HEADER_LENGTH]: String(headerLength),
    });
    if (res.status >= 400) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(res.body.toString("utf8"));
      } catch {
        parsed = { error: res.body.toString("utf8") };
      }
      throw new SocketApiError(res.status, parsed);
    }
    const hl = res.headers[HEADER_LENGTH];
    const split = hl === undefined ? { header: res.body, binary: Buffer.alloc(0) } : splitBody(res.body, String(hl));
    const h = JSON.parse(split.header.toString("utf8")) as Omit<V2InferResponse, "outputs"> & {
      outputs: {
        name: string;
        shape: number[];
        datatype: Datatype;
        data?: unknown[];
        parameters?: { binary_data_size?: number };
      }[];
    };
    const outputs: Record<string, RawTensor> = {};
    let at = 0;
    for (const o of h.outputs) {
      const size = o.parameters?.binary_data_size;
      if (size === undefined) throw new SocketApiError(res.status, { error: `output ${o.name} came back as JSON` });
      outputs[o.name] = tensorFromBytes(o.name, o.datatype, o.shape, split.binary.subarray(at, at + size));
      at += size;
    }
    const out: BinaryInferResponse = { model_name: h.model_name, model_version: h.model_version, outputs };
    if (h.id !== undefined) out.id = h.id;
    if (h.parameters) out.parameters = h.parameters;
    return out;
  }

  models(): Promise<{
    models: { name: string; versions: string[]; serving_version: string | null; strategy: unknown }[];
  }> {
    return this.json("GET", "/v2/models");
  }

  repositoryIndex(ready?: boolean): Promise<{ name: string; version: string; state: string; reason: string }[]> {
    return this.json("POST", "/v2/repository/index", ready === undefined ? {} : { ready });
  }

  /** Holds off model swaps while the app is in a critical section (released, or expired after the TTL). */
  acquireLock(ttlSeconds: number, holder?: string): Promise<UpdateLockInfo> {
    return this.json("POST", "/v1/locks", { ttlSeconds, ...(holder !== undefined ? { holder } : {}) });
  }

  async releaseLock(id: string): Promise<void> {
    await this.json("DELETE", `/v1/locks/${encodeURIComponent(id)}`);
  }

  /** Convenience: named JSON tensors (as in samples.json) to v2 inputs. */
  inferTensors(model: string, tensors: Record<string, JsonTensor>, opts: InferOptions = {}): Promise<V2InferResponse> {
    const inputs = Object.entries(tensors).map(([name, t]) => ({
      name,
      shape: t.shape,
      datatype: t.datatype,
      data: t.data,
    }));
    return this.infer(model, inputs, opts);
  }

  status<T = Record<string, unknown>>(): Promise<T> {
    return this.json("GET", "/v1/status");
  }

  /** A sequence with state kept by the agent (issue 18; stream-client.ts). */
  sequence(model: string, opts: SequenceOptions = {}): InferSequence {
    return openSequence(this, model, opts);
  }

  /** A stream: frames in, answers out, on one connection with back-pressure (issue 18; stream-client.ts). */
  stream(model: string, opts: { version?: string } = {}): InferStream {
    return openStream(this, model, opts);
  }

  async ready(): Promise<boolean> {
    const res = await this.raw("GET", "/v2/health/ready");
    return res.status === 200;
  }
}

export function inferPath(model: string, version?: string): string {
  return version
    ? `/v2/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/infer`
    : `/v2/models/${encodeURIComponent(model)}/infer`;
}
