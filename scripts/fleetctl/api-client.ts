import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { z } from "zod";
import {
  ErrorResponseSchema,
  jsonResponseSchema,
  pathOf,
  type RequestBodyOf,
  type ResponseOf,
  type RouteContract,
} from "../../shared/http/contract.js";
import { BuildStartedSchema, type VersionView, VersionViewSchema } from "../../shared/http/models.js";
import type { RolloutCommand, RolloutStatusName } from "../../shared/http/rollouts.js";
import { HTTP_ROUTES, type HttpRoutes, type OperationId } from "../../shared/http/routes.js";
import type { Variant } from "../../shared/schemas/common.js";

/**
 * Typed client for the fleet server's operator API (`/v1/...`), typed from and checked against
 * the HTTP contract the server implements (shared/http, docs/http-api.md). Used by fleetctl, the
 * demo and the end-to-end tests, so all three exercise the same HTTP surface operators use.
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

/**
 * Pure: why a request never got an answer, naming the URL and the cause (issue 23: a newcomer
 * saw only `fetch failed`). undici throws `TypeError("fetch failed")` with the socket error as
 * `cause` (ECONNREFUSED, ENOTFOUND, a TLS error...), sometimes wrapped once more.
 */
export function unreachable(url: URL, err: unknown): ApiError {
  const causes: string[] = [];
  for (let c: unknown = err, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
    const code = (c as { code?: unknown }).code;
    const text = typeof code === "string" && !c.message.includes(code) ? `${code} ${c.message}` : c.message;
    if (c.message !== "fetch failed" && !causes.includes(text)) causes.push(text);
  }
  const cause = causes.length > 0 ? causes.join(": ") : String(err);
  return new ApiError(
    0,
    "UNREACHABLE",
    `cannot reach the fleet server at ${url.origin} (${url.pathname}): ${cause}. Check --server or EDGEFLEET_SERVER.`,
  );
}

/** `fetch` with a connection failure turned into an error that names the server and the cause. */
async function request(url: URL, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    throw unreachable(url, err);
  }
}

export interface UploadProgress {
  bytes: number;
  total: number;
}

/** What the server answers on `op`'s success statuses, as the contract types it. */
export type Answer<K extends OperationId> = ResponseOf<HttpRoutes[K]>;

/** `GET /v1/rollouts/{id}`: the operator's view of a rollout (shared/http/rollouts.ts). */
export type RolloutView = Answer<"getRollout">;
/** One device of a rollout view. */
export type RolloutMemberView = RolloutView["devices"][number];
/** `GET /v1/model-builds/{id}` (fleet-server/registry/build-tracker.ts). */
export type ModelBuild = Answer<"getModelBuild">;
/** `POST /v1/models` body, as a caller writes it (defaults may be left out). */
export type CreateModelBody = RequestBodyOf<HttpRoutes["createModel"]>;
/** `POST /v1/rollouts` body (shared/http/rollout-definition.ts), as a caller writes it. */
export type CreateRolloutBody = RequestBodyOf<HttpRoutes["createRollout"]>;
export type { RolloutCommand, VersionView };

/** Statuses in which a rollout still changes by itself (the rest wait for an operator). */
export const ROLLOUT_MOVING: ReadonlySet<RolloutStatusName> = new Set(["running", "rolling-back"]);

export class ApiClient {
  constructor(private readonly opts: ApiClientOptions) {}

  /**
   * Calls the route of `op` (shared/http/routes.ts) and parses the answer with the contract's
   * schema for its status: a server that answers something else is a `BAD_RESPONSE`, not a value
   * of the wrong shape handed on.
   */
  private async call<K extends OperationId>(
    op: K,
    // Query pairs as a list when a key repeats (`tag=a=1&tag=b=2`).
    req: { params?: Record<string, string>; query?: Record<string, string> | [string, string][]; body?: unknown } = {},
  ): Promise<Answer<K>> {
    const contract: RouteContract = HTTP_ROUTES[op];
    const search = req.query ? new URLSearchParams(req.query).toString() : "";
    const query = search ? `?${search}` : "";
    const method = typeof contract.method === "string" ? contract.method : contract.method[0]!;
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}` };
    if (req.body !== undefined) headers["content-type"] = "application/json";
    const res = await request(new URL(`${pathOf(contract, req.params)}${query}`, this.opts.baseUrl), {
      method,
      headers,
      body: req.body === undefined ? undefined : JSON.stringify(req.body),
    });
    return this.parse(op, res);
  }

  private async parse<K extends OperationId>(op: K, res: Response): Promise<Answer<K>> {
    const text = await res.text();
    let json: unknown;
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      throw new ApiError(res.status, "BAD_RESPONSE", `server answered ${res.status} with non-JSON body`);
    }
    if (!res.ok) {
      const err = ErrorResponseSchema.safeParse(json);
      if (!err.success) throw new ApiError(res.status, "HTTP_ERROR", `HTTP ${res.status}`);
      throw new ApiError(res.status, err.data.error.code, err.data.error.message, err.data.error.details);
    }
    const schema = jsonResponseSchema(HTTP_ROUTES[op], res.status);
    if (!schema) throw new ApiError(res.status, "BAD_RESPONSE", `${op}: status ${res.status} is not in the contract`);
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".")}: ${i.message}`);
      throw new ApiError(
        res.status,
        "BAD_RESPONSE",
        `${op}: answer does not match the contract (${issues.join("; ")})`,
      );
    }
    return parsed.data as Answer<K>;
  }

  /** Streams a file to `POST /v1/uploads`, reporting bytes sent. */
  async upload(path: string, onProgress?: (p: UploadProgress) => void): Promise<Answer<"upload">> {
    const total = (await stat(path)).size;
    let bytes = 0;
    const source = createReadStream(path, { highWaterMark: 256 * 1024 });
    source.on("data", (chunk) => {
      bytes += (chunk as Buffer).length;
      onProgress?.({ bytes, total });
    });
    const res = await request(new URL(HTTP_ROUTES.upload.path, this.opts.baseUrl), {
      method: "POST",
      headers: {
        authorization: `Bearer ${this.opts.token}`,
        "content-type": "application/octet-stream",
        "content-length": String(total),
      },
      body: Readable.toWeb(source) as ReadableStream<Uint8Array>,
      duplex: "half",
    } as RequestInit);
    return this.parse("upload", res);
  }

  /** Registers a version and waits for it (`201`): the version view with each variant. */
  async createModel(body: CreateModelBody): Promise<VersionView> {
    return VersionViewSchema.parse(await this.call("createModel", { body }));
  }
  /** Starts a tracked model build (`202`); poll it with `getModelBuild`. */
  async startModelBuild(body: CreateModelBody): Promise<z.output<typeof BuildStartedSchema>> {
    return BuildStartedSchema.parse(await this.call("createModel", { body, query: { async: "1" } }));
  }
  getModelBuild(id: string): Promise<ModelBuild> {
    return this.call("getModelBuild", { params: { id } });
  }
  listModels(): Promise<Answer<"listModels">> {
    return this.call("listModels");
  }
  getModelVersion(name: string, version: string): Promise<VersionView> {
    return this.call("getModelVersion", { params: { name, version } });
  }
  /** Cost per prediction (issue 22): per version and rollout; one version with `version`. */
  getModelCost(name: string, version?: string): Promise<Answer<"getModelCost">> {
    return this.call("getModelCost", { params: { name }, ...(version ? { query: { version } } : {}) });
  }
  enrollDevice(body: RequestBodyOf<HttpRoutes["enrollDevice"]>): Promise<Answer<"enrollDevice">> {
    return this.call("enrollDevice", { body });
  }
  /** Bulk enrollment: at most IMPORT_BATCH_MAX devices per call (fleetctl devices import batches a CSV). */
  importDevices(body: RequestBodyOf<HttpRoutes["importDevices"]>): Promise<Answer<"importDevices">> {
    return this.call("importDevices", { body });
  }
  listDevices(): Promise<Answer<"listDevices">> {
    return this.call("listDevices");
  }
  getDevice(id: string): Promise<Answer<"getDevice">> {
    return this.call("getDevice", { params: { id } });
  }
  /** Offline release signing: releases waiting for signatures (docs/security.md). */
  pendingReleases(): Promise<Answer<"listPendingReleases">> {
    return this.call("listPendingReleases");
  }
  variantManifest(name: string, version: string, variant: Variant): Promise<Answer<"getVariantManifest">> {
    return this.call("getVariantManifest", { params: { name, version }, query: { variant } });
  }
  /** Uploads signatures for a variant waiting for them: `200` published, `202` more needed. */
  uploadSignatures(
    name: string,
    version: string,
    variant: Variant,
    envelope: RequestBodyOf<HttpRoutes["submitVariantSignatures"]>,
  ): Promise<Answer<"submitVariantSignatures">> {
    return this.call("submitVariantSignatures", { params: { name, version, variant }, body: envelope });
  }
  /** Uploads signatures for one pending release (upload or re-release): `200` published, `202` more needed. */
  submitPendingSignatures(
    id: string,
    envelope: RequestBodyOf<HttpRoutes["submitPendingSignatures"]>,
  ): Promise<Answer<"submitPendingSignatures">> {
    return this.call("submitPendingSignatures", { params: { id }, body: envelope });
  }
  createRollout(body: CreateRolloutBody): Promise<RolloutView> {
    return this.call("createRollout", { body });
  }
  /**
   * `POST /v1/rollouts` with a definition assembled from flags and a file, unchecked: the server
   * parses it with the contract and answers 400 with the path of any bad field.
   */
  createRolloutDraft(draft: Readonly<Record<string, unknown>>): Promise<RolloutView> {
    return this.call("createRollout", { body: draft });
  }
  /** `POST /v1/rollouts` with a YAML definition as it is (`content-type: application/yaml`). */
  async createRolloutFromYaml(yaml: string): Promise<RolloutView> {
    const res = await request(new URL(HTTP_ROUTES.createRollout.path, this.opts.baseUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${this.opts.token}`, "content-type": "application/yaml" },
      body: yaml,
    });
    return this.parse("createRollout", res);
  }
  getRollout(id: string): Promise<RolloutView> {
    return this.call("getRollout", { params: { id } });
  }
  listRollouts(): Promise<Answer<"listRollouts">> {
    return this.call("listRollouts");
  }
  /** `POST /v1/rollouts/{id}/{pause|resume|abort|rollback|promote}`. */
  rolloutCommand(id: string, cmd: RolloutCommand): Promise<RolloutView> {
    return this.call(`${cmd}Rollout`, { params: { id } });
  }
  /** API tokens (admin): create, list, revoke. */
  createToken(body: RequestBodyOf<HttpRoutes["createToken"]>): Promise<Answer<"createToken">> {
    return this.call("createToken", { body });
  }
  listTokens(): Promise<Answer<"listTokens">> {
    return this.call("listTokens");
  }
  revokeToken(id: string): Promise<Answer<"revokeToken">> {
    return this.call("revokeToken", { params: { id } });
  }
  /** The audit log (admin), entries after `after`. */
  listAudit(after: number): Promise<Answer<"listAudit">> {
    return this.call("listAudit", { query: { after: String(after) } });
  }
  createEnrollmentToken(
    body: RequestBodyOf<HttpRoutes["createEnrollmentToken"]>,
  ): Promise<Answer<"createEnrollmentToken">> {
    return this.call("createEnrollmentToken", { body });
  }
  revokeDevice(id: string, body: RequestBodyOf<HttpRoutes["revokeDevice"]>): Promise<Answer<"revokeDevice">> {
    return this.call("revokeDevice", { params: { id }, body });
  }
  /** `GET /v1/openapi.json`: this API as an OpenAPI 3.1 document. */
  // Governance (issue 21): lifecycle stages, reviews, the approval policy.
  versionGovernance(name: string, version: string): Promise<Answer<"getVersionGovernance">> {
    return this.call("getVersionGovernance", { params: { name, version } });
  }
  setVersionStage(name: string, version: string, body: RequestBodyOf<HttpRoutes["setVersionStage"]>) {
    return this.call("setVersionStage", { params: { name, version }, body });
  }
  reviewVersion(name: string, version: string, decision: "approve" | "refuse", comment: string) {
    const op = decision === "approve" ? "approveVersion" : "refuseVersion";
    return this.call(op, { params: { name, version }, body: { comment } });
  }
  approvalPolicy(name: string): Promise<Answer<"getApprovalPolicy">> {
    return this.call("getApprovalPolicy", { params: { name } });
  }
  setApprovalPolicy(name: string, body: RequestBodyOf<HttpRoutes["setApprovalPolicy"]>) {
    return this.call("setApprovalPolicy", { params: { name }, body });
  }
  modelFeedback(name: string, tags: string[] = []): Promise<Answer<"getModelFeedback">> {
    return this.call("getModelFeedback", { params: { name }, query: tags.map((t): [string, string] => ["tag", t]) });
  }
  staleDevices(model?: string): Promise<Answer<"listStaleDevices">> {
    return this.call("listStaleDevices", model === undefined ? {} : { query: { model } });
  }

  openApi(): Promise<Answer<"getOpenApi">> {
    return this.call("getOpenApi");
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
      onUpdate?: (s: RolloutView) => void;
      until?: (s: RolloutView) => boolean;
    } = {},
  ): Promise<RolloutView> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
    const until = opts.until ?? ((s: RolloutView) => !ROLLOUT_MOVING.has(s.status));
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
