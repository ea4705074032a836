import { request } from "node:http";
import type { JsonTensor } from "../../shared/schemas/tensor.js";

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
  outputs: { name: string; shape: number[]; datatype: string; data: unknown[] }[];
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

  infer(
    model: string,
    inputs: V2InferInput[],
    opts: { version?: string; outputs?: string[] } = {},
  ): Promise<V2InferResponse> {
    const path = opts.version
      ? `/v2/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(opts.version)}/infer`
      : `/v2/models/${encodeURIComponent(model)}/infer`;
    const body: Record<string, unknown> = { inputs };
    if (opts.outputs) body.outputs = opts.outputs.map((name) => ({ name }));
    return this.json("POST", path, body);
  }

  /** Convenience: named JSON tensors (as in samples.json) to v2 inputs. */
  inferTensors(
    model: string,
    tensors: Record<string, JsonTensor>,
    opts: { version?: string } = {},
  ): Promise<V2InferResponse> {
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

  async ready(): Promise<boolean> {
    const res = await this.raw("GET", "/v2/health/ready");
    return res.status === 200;
  }
}
