import { EdgeFleetError } from "../../shared/errors.js";
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
 * code→status table. Fastify's own 4xx errors (malformed JSON, body over the limit, wrong media type)
 * carry `statusCode`; they become BAD_REQUEST / PAYLOAD_TOO_LARGE. Pure.
 */
export function apiErrorReply(err: unknown): ApiErrorReply {
  let e: EdgeFleetError;
  if (err instanceof EdgeFleetError) e = err;
  else {
    const f = err as { statusCode?: number; code?: string; message?: string };
    const message = f?.message ?? String(err);
    if (f?.statusCode === 413 || f?.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      e = new EdgeFleetError("PAYLOAD_TOO_LARGE", message);
    } else if (typeof f?.statusCode === "number" && f.statusCode >= 400 && f.statusCode < 500) {
      e = new EdgeFleetError("BAD_REQUEST", message);
    } else e = new EdgeFleetError("INTERNAL", message);
  }
  const status = httpStatusFor(e.code);
  return {
    status,
    // No message leaves with a file path or onnxruntime's source locations (issue 20 §7); the log keeps the original.
    body: { error: sanitizeMessage(e.message), code: e.code },
    serverFault: status >= 500 && e.code !== "MODEL_NOT_READY",
  };
}
