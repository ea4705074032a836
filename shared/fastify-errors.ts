import { EdgeFleetError, type ErrorCode } from "./errors.js";

/**
 * Anything a route or fastify itself throws → our error type: one mapping for the fleet server's API
 * and the agent's socket (issue 23; they used to differ). Fastify's own errors carry `statusCode` and
 * a `FST_…` code: 413 → PAYLOAD_TOO_LARGE, 404 → NOT_FOUND, other 4xx → BAD_REQUEST (the fastify code
 * in `details`). Anything else is a bug: INTERNAL with a fixed message, the original kept only as the
 * cause (logged, never sent), so internals such as paths cannot reach a client. Pure.
 */
export function fromThrown(err: unknown): EdgeFleetError {
  if (err instanceof EdgeFleetError) return err;
  const fe = (typeof err === "object" && err !== null ? err : {}) as {
    statusCode?: unknown;
    code?: unknown;
    message?: unknown;
  };
  const status = typeof fe.statusCode === "number" ? fe.statusCode : 500;
  const message = typeof fe.message === "string" ? fe.message : "request failed";
  const fastifyCode = typeof fe.code === "string" ? fe.code : undefined;
  if (status === 413 || fastifyCode === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new EdgeFleetError("PAYLOAD_TOO_LARGE", message);
  }
  if (status >= 400 && status < 500) {
    const code: ErrorCode = status === 404 ? "NOT_FOUND" : "BAD_REQUEST";
    return new EdgeFleetError(code, message, { details: fastifyCode ? { fastifyCode } : undefined });
  }
  return new EdgeFleetError("INTERNAL", "internal error", { cause: err });
}
