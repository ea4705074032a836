import type { FastifyInstance } from "fastify";
import type { z } from "zod";
import {
  type ErrorResponse,
  ErrorResponseSchema,
  jsonResponseSchema,
  pathOf,
  type QueryOf,
  type RequestBodyOf,
  type ResponseOf,
} from "../../shared/http/contract.js";
import { HTTP_ROUTES, type HttpRoutes, type OperationId } from "../../shared/http/routes.js";

/**
 * One typed way for tests to call the fleet server's HTTP API in-process (fastify `inject`, no
 * socket), by operation id from the contract (shared/http/routes.ts): the path, method and body
 * types come from the contract, and every JSON answer is parsed with the contract's schema for its
 * status (the error envelope for errors), so a test also fails when the server drifts from it.
 */

type ParamsArg<C> = C extends { params: z.ZodObject } ? { params: z.input<C["params"]> } : { params?: never };

export type ApiRequest<K extends OperationId> = ParamsArg<HttpRoutes[K]> & {
  query?: QueryOf<HttpRoutes[K]>;
  /** JSON body, typed by the contract (what a caller writes: defaults may be left out). */
  body?: RequestBodyOf<HttpRoutes[K]>;
  /** A body sent as is, for what the contract refuses (malformed JSON, YAML, bytes). */
  raw?: { payload: string | Buffer; contentType: string };
  headers?: Record<string, string>;
  /** Bearer token; `null` sends none. Default: the harness's token. */
  token?: string | null;
  /** For routes with several methods (`getBundle`: GET or HEAD). */
  method?: "GET" | "HEAD";
};

export interface ApiAnswer<K extends OperationId> {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** The raw body (bundles, metrics). */
  payload: Buffer;
  /** Set for 2xx JSON answers, parsed with the contract's schema for the status. */
  body: ResponseOf<HttpRoutes[K]> | undefined;
  /** Set for error answers, parsed with the error envelope. */
  error: ErrorResponse["error"] | undefined;
}

export interface HttpApi {
  /** Calls the route and returns what it answered, whatever the status. */
  call<K extends OperationId>(op: K, req?: ApiRequest<K>): Promise<ApiAnswer<K>>;
  /** Calls the route and returns its body; fails the test unless the status is `status` (default: the first the contract lists). */
  ok<K extends OperationId>(op: K, req?: ApiRequest<K>, status?: number): Promise<ResponseOf<HttpRoutes[K]>>;
  /** Calls the route expecting an error; returns the status and the error. */
  fail<K extends OperationId>(op: K, req?: ApiRequest<K>): Promise<{ status: number } & ErrorResponse["error"]>;
}

function queryString(query: Record<string, unknown> | undefined): string {
  if (!query) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export function httpApi(app: FastifyInstance, token: string): HttpApi {
  async function call<K extends OperationId>(op: K, req: ApiRequest<K> = {} as ApiRequest<K>): Promise<ApiAnswer<K>> {
    const contract = HTTP_ROUTES[op];
    const method = req.method ?? (typeof contract.method === "string" ? contract.method : contract.method[0]);
    const params = (req as { params?: Record<string, string> }).params;
    const url = `${pathOf(contract, params)}${queryString(req.query as Record<string, unknown> | undefined)}`;
    const bearer = req.token === undefined ? token : req.token;
    const headers: Record<string, string> = {
      ...(bearer !== null ? { authorization: `Bearer ${bearer}` } : {}),
      ...(req.body !== undefined ? { "content-type": "application/json" } : {}),
      ...(req.raw ? { "content-type": req.raw.contentType } : {}),
      ...req.headers,
    };
    const payload = req.raw ? req.raw.payload : req.body !== undefined ? JSON.stringify(req.body) : undefined;
    const res = await app.inject({
      method: method as "GET",
      url,
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
    const answer: ApiAnswer<K> = {
      status: res.statusCode,
      headers: res.headers,
      payload: res.rawPayload,
      body: undefined,
      error: undefined,
    };
    const isJson = String(res.headers["content-type"] ?? "").startsWith("application/json") && res.payload.length > 0;
    if (!isJson) return answer;
    const json: unknown = res.json();
    const schema = jsonResponseSchema(contract, res.statusCode);
    if (schema) answer.body = schema.parse(json) as ResponseOf<HttpRoutes[K]>;
    else if (res.statusCode >= 400) answer.error = ErrorResponseSchema.parse(json).error;
    else throw new Error(`${op}: status ${res.statusCode} is not in the contract`);
    return answer;
  }
  return {
    call,
    async ok(op, req, status) {
      const r = await call(op, req);
      const contract = HTTP_ROUTES[op];
      const expected = status ?? Number(Object.keys(contract.responses)[0]);
      if (r.status !== expected || r.body === undefined) {
        throw new Error(
          `${op}: expected ${expected}, got ${r.status}${r.error ? ` ${r.error.code}: ${r.error.message}` : ""}`,
        );
      }
      return r.body;
    },
    async fail(op, req) {
      const r = await call(op, req);
      if (r.error === undefined) throw new Error(`${op}: expected an error, got ${r.status}`);
      return { status: r.status, ...r.error };
    },
  };
}
