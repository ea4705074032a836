import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import type { ServingLayer } from "./serving-layer.js";
import type { LockManager } from "./update-locks.js";

const AcquireSchema = z.object({ ttlSeconds: z.number().positive(), holder: z.string().max(200).optional() }).strict();
const RenewSchema = z.object({ ttlSeconds: z.number().positive() }).strict();

function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
    throw new EdgeFleetError("BAD_REQUEST", `invalid ${what}: ${issues.join("; ")}`, { details: { issues } });
  }
  return r.data;
}

/**
 * `/v1/locks` (update locks for apps in a critical section) and `GET /v1/serving` (strategies and
 * shadow/A-B figures per candidate). Registered on the socket API before it listens.
 */
export function registerServingRoutes(
  server: FastifyInstance,
  deps: { locks: LockManager; serving: ServingLayer },
): void {
  server.post("/v1/locks", async (req, reply) => {
    const body = parse(AcquireSchema, req.body, "lock request");
    void reply.code(201);
    return deps.locks.acquire({
      ttlSeconds: body.ttlSeconds,
      ...(body.holder !== undefined ? { holder: body.holder } : {}),
    });
  });
  server.post<{ Params: { id: string } }>("/v1/locks/:id/renew", async (req) => {
    const body = parse(RenewSchema, req.body, "lock renewal");
    return deps.locks.renew(req.params.id, body.ttlSeconds);
  });
  server.delete<{ Params: { id: string } }>("/v1/locks/:id", async (req) => {
    deps.locks.release(req.params.id);
    return { released: req.params.id };
  });
  server.get("/v1/locks", async () => ({ locks: deps.locks.list() }));
  server.get("/v1/serving", async () => ({ candidates: deps.serving.figures() }));
}
