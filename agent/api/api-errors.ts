import type { EdgeFleetError } from "../../shared/errors.js";
import { fromThrown } from "../../shared/fastify-errors.js";
import { httpStatusFor } from "../../shared/http-status.js";
import { sanitizeMessage } from "../runtime/run-failures.js";

export interface ApiErrorReply {
  status: number;
  body: { error: string; code: EdgeFleetError["code"] };
  /** Server-side faults are logged loudly; client mistakes are not. */
  serverFault: boolean;
}

/**
 * Any error a route or fastify itself throws → v2-style `{ error, code }` with the status from the one
 * code→status table, through the mapping the fleet server uses too (shared/fastify-errors.ts). Pure.
 */
export function apiErrorReply(err: unknown): ApiErrorReply {
  const e = fromThrown(err);
  const status = httpStatusFor(e.code);
  return {
    status,
    // No message leaves with a file path or onnxruntime's source locations (issue 20 §7); the log keeps the original.
    body: { error: sanitizeMessage(e.message), code: e.code },
    serverFault: status >= 500 && e.code !== "MODEL_NOT_READY",
  };
}
