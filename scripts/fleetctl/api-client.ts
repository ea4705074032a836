import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { DisplayCounts as SharedDisplayCounts } from "../../shared/rollout-display.js";

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
  /** Stage index (0-based) the device was assigned in. */
  stage?: number;
  outcome?: "passed" | "failed" | null;
  reason?: string | null;
  progress?: { bytes: number; total: number };
  error?: { code: string; message: string };
  rollback?: { bundle: string | null; state: string; error?: { code: string; message: string } } | null;
  /** What the device serves for the model now (absent from servers older than it). */
  runningNow?: { version: string; variant: string; bundle: string; thisRollout: boolean } | null;
  /** Set when the verdict and what the device runs disagree (e.g. committed after a TIMEOUT). */
  note?: string;
  updatedAt?: string;
}

/** Per-state counts; `removed` is absent from servers older than it (fleetctl may be newer than its server). */
export type DisplayCounts = Omit<SharedDisplayCounts, "removed"> & { removed?: number };

export interface RolloutStatus {
  id: string;
  model: string;
  version: string;
  variant: string;
  /** running | paused | completed | aborted | rolling-back | rolled-back | superseded (legacy: failed). */
  status: string;
  strategy?: string;
  reason?: string | null;
  createdAt: string;
  bundle?: string;
  stage?: {
    index: number;
    number: number;
    of: number;
    percent: number;
    soakSeconds: number;
    startedAt: string;
    soakStartedAt: string | null;
  };
  stages?: { index: number; percent: number; soakSeconds: number; counts: DisplayCounts }[];
  gates?: {
    executed: number;
    failed: number;
    failedPercent: number | null;
    breached: string | null;
    waitingFor: string | null;
  };
  history?: { seq: number; ts: string; type: string; detail: Record<string, unknown> }[];
  devices: RolloutDeviceStatus[];
  counts: {
    total: number;
    committed: number;
    failed: number;
    inProgress: number;
    pending: number;
  } & Partial<DisplayCounts>;
}

/** `GET /v1/model-builds/{id}` (fleet-server/registry/build-tracker.ts). */
export interface ModelBuild {
  id: string;
  status: "running" | "succeeded" | "failed";
  phase: string | null;
  phases: { name: string; status: string; progress: { done: number; total: number } | null }[];
  progress: { done: number; total: number } | null;
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

export interface CreateModelBody {
  name: string;
  version: string;
  upload: string;
  samples: unknown[];
  lineage?: Record<string, unknown>;
  modelCard?: string;
  /** Compatibility overrides (arch, minMemoryMB, executionProviders, minAgentVersion). */
  compatibility?: Record<string, unknown>;
  /** Build a validated int8 variant beside fp32 (server default: "none"). */
  quantize?: "int8" | "none";
  /** Overrides of the int8 accuracy policy (maxAbsError, maxRelError, minTop1Agreement, ...). */
  accuracyPolicy?: Record<string, unknown>;
  /** Extra inputs used only to validate int8 against fp32. */
  calibration?: unknown[];
}

export interface RolloutStageBody {
  percent: number;
  soakSeconds?: number;
  gates?: {
    minDevices?: number;
    maxFailedPercent?: number;
    maxP95LatencyRatio?: number;
    maxErrorRatePercent?: number;
    minShadowAgreementPercent?: number;
    minRequestsPerDevice?: number;
  };
}

/** `POST /v1/rollouts` (see fleet-server/rollout/definition.ts for the full schema). */
export interface CreateRolloutBody {
  model: string;
  version: string;
  variant?: string;
  target: { deviceIds?: string[]; tags?: Record<string, string> | string[]; profiles?: string[] };
  strategy?: "canary" | "all-at-once" | "shadow" | "ab";
  stages?: RolloutStageBody[];
  abWeight?: number;
  shadowSampleRate?: number;
  rate?:
    | { maxPerMinute: number }
    | { exponential: { base: number; factor: number; afterSuccesses: number; maxPerMinute?: number } };
  abort?: { action?: "pause" | "rollback"; maxFailedPercent?: number; minExecuted?: number };
  deadlines?: { downloadSeconds?: number; installSeconds?: number; probationSeconds?: number };
  maintenanceWindow?: { cron: string; durationMinutes: number; timeZone?: string };
  healthPolicy?: Record<string, number>;
  supersedes?: string[];
}

export type RolloutCommand = "pause" | "resume" | "abort" | "rollback" | "promote";

/** Statuses in which a rollout still changes by itself (the rest wait for an operator). */
export const ROLLOUT_MOVING = new Set(["running", "rolling-back"]);

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
  /** Starts a tracked model build (`202`); poll it with `getModelBuild`. */
  startModelBuild(body: CreateModelBody): Promise<{ buildId: string; status: string; links: { self: string } }> {
    return this.request("POST", "/v1/models?async=1", body);
  }
  getModelBuild(id: string): Promise<ModelBuild> {
    return this.request("GET", `/v1/model-builds/${encodeURIComponent(id)}`);
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
  /** Offline release signing: releases waiting for signatures (docs/security.md). */
  pendingReleases(): Promise<{
    pending: { id: string; kind: string; name: string; version: string; variant: string; manifest: unknown }[];
  }> {
    return this.request("GET", "/v1/releases/pending");
  }
  variantManifest(
    name: string,
    version: string,
    variant: string,
  ): Promise<{ pendingSignature: boolean; pendingId: string | null; manifest: unknown }> {
    return this.request(
      "GET",
      `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/manifest?variant=${encodeURIComponent(variant)}`,
    );
  }
  uploadSignatures(
    name: string,
    version: string,
    variant: string,
    envelope: unknown,
  ): Promise<Record<string, unknown>> {
    return this.request(
      "POST",
      `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/variants/${encodeURIComponent(variant)}/signatures`,
      envelope,
    );
  }
  /** Uploads signatures for one pending release (upload or re-release): `200` published, `202` more needed. */
  submitPendingSignatures(id: string, envelope: unknown): Promise<unknown> {
    return this.request("POST", `/v1/releases/pending/${encodeURIComponent(id)}/signatures`, envelope);
  }
  createRollout(body: CreateRolloutBody): Promise<RolloutStatus> {
    return this.request("POST", "/v1/rollouts", body);
  }
  /** `POST /v1/rollouts` with a YAML definition as it is (`content-type: application/yaml`). */
  async createRolloutFromYaml(yaml: string): Promise<RolloutStatus> {
    const res = await fetch(new URL("/v1/rollouts", this.opts.baseUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${this.opts.token}`, "content-type": "application/yaml" },
      body: yaml,
    });
    return this.parse(res);
  }
  getRollout(id: string): Promise<RolloutStatus> {
    return this.request("GET", `/v1/rollouts/${encodeURIComponent(id)}`);
  }
  listRollouts(): Promise<{ rollouts: RolloutStatus[] }> {
    return this.request("GET", "/v1/rollouts");
  }
  /** `POST /v1/rollouts/{id}/{pause|resume|abort|rollback|promote}`. */
  rolloutCommand(id: string, cmd: RolloutCommand): Promise<RolloutStatus> {
    return this.request("POST", `/v1/rollouts/${encodeURIComponent(id)}/${cmd}`);
  }

  /**
   * Polls a rollout until `until` holds (default: it is no longer `running` or `rolling-back`),
   * calling `onUpdate` on every poll.
   */
  async waitForRollout(
    id: string,
    opts: {
      intervalMs?: number;
      timeoutMs?: number;
      onUpdate?: (s: RolloutStatus) => void;
      until?: (s: RolloutStatus) => boolean;
    } = {},
  ): Promise<RolloutStatus> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
    const until = opts.until ?? ((s: RolloutStatus) => !ROLLOUT_MOVING.has(s.status));
    for (;;) {
      const status = await this.getRollout(id);
      opts.onUpdate?.(status);
      if (until(status)) return status;
      if (Date.now() > deadline) {
        throw new ApiError(0, "TIMEOUT", `rollout ${id} still ${status.status} after timeout`, status);
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
    }
  }
}
