import { z } from "zod";

/**
 * The fleet server's HTTP contract (docs/http-api.md): one `RouteContract` per route, in
 * `shared/http/*.ts` split by domain, gathered in `shared/http/routes.ts`. The server parses
 * requests with these schemas (fleet-server/http/typed-route.ts), checks its responses against them
 * when asked to (`checkResponses`), and generates `GET /v1/openapi.json` from them; fleetctl's
 * `ApiClient` takes its types from them and parses what the server answers with them.
 *
 * Who may call a route is not part of this contract: the server declares it on each route
 * (`access(...)`, fleet-server/http/route-access.ts) and the OpenAPI document reads it from the
 * server's own route table, so the two cannot disagree.
 */

export type HttpMethod = "GET" | "HEAD" | "POST" | "DELETE";

/** A response that is not JSON: a byte stream (bundles) or text (Prometheus metrics). */
export interface NonJsonBody {
  kind: "binary" | "text";
  mediaType: string;
  description: string;
}

/** A response body: a zod schema for JSON, or a non-JSON media type. `null`: no body (HEAD). */
export type ResponseBody = z.ZodType | NonJsonBody | null;

export interface RouteContract {
  /** Unique name of the operation (`operationId` in the OpenAPI document, the client's method). */
  operationId: string;
  method: HttpMethod | readonly HttpMethod[];
  /** Fastify's path syntax (`/v1/models/:name`); the OpenAPI document writes `{name}`. */
  path: string;
  summary: string;
  /** OpenAPI tag: the domain the route belongs to. */
  tag: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** JSON request body (or the other media types in `bodyMediaTypes`). */
  body?: z.ZodType;
  /** The body may be left out (the server reads a missing body as `{}`). */
  bodyOptional?: boolean;
  /** Request media types besides JSON (`application/yaml` for rollouts, octet-stream for uploads). */
  bodyMediaTypes?: readonly string[];
  /** Success responses by status; every route may also answer the error statuses of `ErrorResponseSchema`. */
  responses: Readonly<Record<number, ResponseBody>>;
}

/** Keeps the literal types of a contract (operationId, responses) for the client and the server. */
export function defineRoute<const C extends RouteContract>(contract: C): C {
  return contract;
}

/** Every error the API answers: `{ error: { code, message, details? } }` (docs/errors.md). */
export const ErrorResponseSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});
export type ErrorResponse = z.infer<typeof ErrorResponseSchema>;

type JsonSchemasOf<R> = { [S in keyof R]: R[S] extends z.ZodType ? R[S] : never }[keyof R];

/** The JSON body of a route's success responses, as the server sends it. */
export type ResponseOf<C extends RouteContract> = z.output<JsonSchemasOf<C["responses"]>>;
/** The route's JSON request body as a caller writes it (defaults not yet applied). */
export type RequestBodyOf<C extends RouteContract> = C["body"] extends z.ZodType ? z.input<C["body"]> : never;
/** The route's path parameters. */
export type ParamsOf<C extends RouteContract> = C["params"] extends z.ZodObject ? z.input<C["params"]> : never;
/** The route's query parameters as a caller writes them. */
export type QueryOf<C extends RouteContract> = C["query"] extends z.ZodObject ? z.input<C["query"]> : never;

/** Fills `:name` segments of a contract path from `params`, percent-encoded. */
export function pathOf(contract: Pick<RouteContract, "path">, params: Record<string, string> = {}): string {
  return contract.path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`path ${contract.path}: missing parameter ${name}`);
    return encodeURIComponent(value);
  });
}

/** The JSON schema of `status` for a route, or undefined when that status has no JSON body. */
export function jsonResponseSchema(contract: RouteContract, status: number): z.ZodType | undefined {
  const body = contract.responses[status];
  return body instanceof z.ZodType ? body : undefined;
}
