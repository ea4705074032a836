import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import type { z } from "zod";
import {
  ErrorResponseSchema,
  jsonResponseSchema,
  type ResponseOf,
  type RouteContract,
} from "../../shared/http/contract.js";
import { access, type RouteAccess } from "./route-access.js";
import { describeIssues, parseInput } from "./validate.js";

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

/** What a contract route's handler receives: params, query and body already parsed by the contract. */
export interface ContractInput<C extends RouteContract> {
  params: Parsed<C["params"]>;
  query: Parsed<C["query"]>;
  body: Parsed<C["body"]>;
  req: FastifyRequest;
  reply: FastifyReply;
}

/**
 * Registers the route `contract` describes (shared/http/*.ts): its method and path, its
 * `access(level)` (who may call it, fleet-server/http/route-access.ts), and a handler that gets the
 * request parsed by the contract's schemas (VALIDATION_FAILED with the field paths otherwise).
 *
 * The handler returns the response body, typed by the contract's success responses, or the reply
 * it sent itself (a status other than the first, headers, a stream). The contract's operation id
 * goes in the route's config, so the route table (`declaredRoutes`) links every route to its
 * contract: the OpenAPI document and the response check (`checkResponses`) read it there.
 */
export function contractRoute<C extends RouteContract>(
  app: FastifyInstance,
  contract: C,
  level: RouteAccess,
  handler: (input: ContractInput<C>) => Promise<ResponseOf<C> | FastifyReply>,
  options: Partial<Pick<RouteOptions, "exposeHeadRoute">> = {},
): void {
  const methods = Array.isArray(contract.method) ? [...contract.method] : [contract.method as string];
  app.route({
    method: methods,
    url: contract.path,
    ...options,
    config: { ...access(level).config, operation: contract.operationId },
    handler: async (req, reply) => {
      const params = contract.params ? parseInput(contract.params, req.params, "params") : undefined;
      const query = contract.query ? parseInput(contract.query, req.query, "query") : undefined;
      const raw = contract.bodyOptional ? (req.body ?? {}) : req.body;
      const body = contract.body ? parseInput(contract.body, raw, "body") : undefined;
      const input = { params, query, body, req, reply } as ContractInput<C>;
      const result = await handler(input);
      // A handler that sent its own reply returns it; fastify must not send a second one.
      return result === reply ? reply : result;
    },
  });
}

/**
 * Pure: what is wrong with a JSON response body, or null when it matches the contract. The schema
 * is the contract's for `status` (`/readyz` answers 503 with its probe body), else the error
 * envelope for an error status; a success status the contract does not list is a mismatch too.
 * `contract` is undefined for the not-found handler, whose answers are errors.
 */
export function responseProblem(contract: RouteContract | undefined, status: number, payload: unknown): string | null {
  const schema =
    (contract ? jsonResponseSchema(contract, status) : undefined) ?? (status >= 400 ? ErrorResponseSchema : undefined);
  const where = `${contract?.operationId ?? "response"} ${status}`;
  if (!schema) return contract ? `${where}: the contract lists no JSON response for this status` : null;
  const r = schema.safeParse(payload);
  return r.success ? null : describeIssues(where, r.error);
}
