import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";

/**
 * Typed client for the fleet server's operator API (`/v1/...`). Used by fleetctl, the demo and
 * the end-to-end tests, so all three exercise the same HTTP surface operators use.
 */
export interface ApiClientOptions {
  baseUrl: string;
  token: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface UploadProgress {
  bytes: number;
  total: number;
}

export interface RolloutDeviceStatus {
  deviceId: string;
  state: string;
  progress?: { bytes: number; total: number };
  error?: { code: string; message: string };
  updatedAt?: string;
}

export interface RolloutStatus {
  id: string;
  model: string;
  version: string;
  variant: string;
  status: string;
  createdAt: string;
  devices: RolloutDeviceStatus[];
  counts: { total: number; committed: number; failed: number; inProgress: number; pending: number };
}

export interface CreateModelBody {
  name: string;
  version: string;
  upload: string;
  samples: unknown[];
  lineage?: Record<string, unknown>;
  modelCard?: string;
}

export interface CreateRolloutBody {
  model: string;
  version: string;
  variant?: string;
  target: { deviceIds?: string[]; tags?: Record<string, string> };
  healthPolicy?: Record<string, number>;
}

export class ApiClient {
  constructor(private readonly opts: ApiClientOptions) {}

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(new URL(path, this.opts.baseUrl), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return this.parse<T>(res);
  }

  private async parse<T>(res: Response): Promise<T> {
    const text = await res.text();
    let json: unknown;
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      throw new ApiError(res.status, "BAD_RESPONSE", `server answered ${res.status} with non-JSON body`);
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
      throw new ApiError(res.status, err?.code ?? "HTTP_ERROR", err?.message ?? `HTTP ${res.status}`, err?.details);
    }
    return json as T;
  }

  /** Streams a file to `POST /v1/uploads`, reporting bytes sent. */
  async upload(path: string, onProgress?: (p: UploadProgress) => void): Promise<{ sha256: string; size: number }> {
    const total = (await stat(path)).size;
    let bytes = 0;
    const source = createReadStream(path, { highWaterMark: 256 * 1024 });
    source.on("data", (chunk) => {
      bytes += (chunk as Buffer).length;
      onProgress?.({ bytes, total });
    });
    const res = await fetch(new URL("/v1/uploads", this.opts.baseUrl), {
      method: "POST",
      headers: {
        authorization: `Bearer ${this.opts.token}`,
        "content-type": "application/octet-stream",
        "content-length": String(total),
      },
      body: Readable.toWeb(source) as ReadableStream<Uint8Array>,
      duplex: "half",
    } as RequestInit);
    return this.parse(res);
  }

  createModel(body: CreateModelBody): Promise<Record<string, unknown>> {
    return this.request("POST", "/v1/models", body);
  }
  listModels(): Promise<{ models: Record<string, unknown>[] }> {
    return this.request("GET", "/v1/models");
  }
  getModelVersion(name: string, version: string): Promise<Record<string, unknown>> {
    return this.request("GET", `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`);
  }
  enrollDevice(body: { id: string; tags?: Record<string, string>; profile?: string }): Promise<{
    id: string;
    password: string;
  }> {
    return this.request("POST", "/v1/devices", body);
  }
  listDevices(): Promise<{ devices: Record<string, unknown>[] }> {
    return this.request("GET", "/v1/devices");
  }
  getDevice(id: string): Promise<Record<string, unknown>> {
    return this.request("GET", `/v1/devices/${encodeURIComponent(id)}`);
  }
  createRollout(body: CreateRolloutBody): Promise<RolloutStatus> {
    return this.request("POST", "/v1/rollouts", body);
  }
  getRollout(id: string): Promise<RolloutStatus> {
    return this.request("GET", `/v1/rollouts/${encodeURIComponent(id)}`);
  }
  listRollouts(): Promise<{ rollouts: RolloutStatus[] }> {
    return this.request("GET", "/v1/rollouts");
  }

  /** Polls a rollout until it is no longer running, calling `onUpdate` on every poll. */
  async waitForRollout(
    id: string,
    opts: { intervalMs?: number; timeoutMs?: number; onUpdate?: (s: RolloutStatus) => void } = {},
  ): Promise<RolloutStatus> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
    for (;;) {
      const status = await this.getRollout(id);
      opts.onUpdate?.(status);
      if (status.status !== "running") return status;
      if (Date.now() > deadline) throw new ApiError(0, "TIMEOUT", `rollout ${id} still running after timeout`);
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
    }
  }
}
