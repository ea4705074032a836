import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from "fastify";
import { EdgeFleetError, type ErrorCode } from "../../shared/errors.js";
import { httpStatusFor } from "../../shared/http-status.js";
import type { Logger } from "../../shared/logger.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { DeviceService } from "../devices/device-service.js";
import type { ModelService } from "../registry/model-service.js";
import type { RolloutService } from "../rollout/rollout-service.js";
import type { DeviceRepo } from "../store/device-repo.js";
import { registerDeviceRoutes } from "./routes-devices.js";
import { registerModelRoutes } from "./routes-models.js";
import { registerRolloutRoutes } from "./routes-rollouts.js";

export interface HttpDeps {
  log: Logger;
  adminToken: string;
  maxUploadBytes: number;
  blobs: BlobStore;
  devices: DeviceService;
  deviceRepo: DeviceRepo;
  models: ModelService;
  rollouts: RolloutService;
}

/** Who made an authenticated request; devices only reach bundle downloads. */
export type Caller = { kind: "admin" } | { kind: "device"; deviceId: string };
export type CallerOf = (req: FastifyRequest) => Caller;

const JSON_BODY_LIMIT = 8 * 1024 * 1024;

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

/** Maps anything thrown (ours, fastify's, a bug) to our error type. */
function toApiError(err: unknown): EdgeFleetError {
  if (err instanceof EdgeFleetError) return err;
  const fe = err as Partial<FastifyError>;
  const status = typeof fe.statusCode === "number" ? fe.statusCode : 500;
  const message = typeof fe.message === "string" ? fe.message : "request failed";
  if (status === 413 || fe.code === "FST_ERR_CTP_BODY_TOO_LARGE")
    return new EdgeFleetError("PAYLOAD_TOO_LARGE", message);
  if (status >= 400 && status < 500) {
    const code: ErrorCode = status === 404 ? "NOT_FOUND" : "BAD_REQUEST";
    return new EdgeFleetError(code, message, fe.code ? { fastifyCode: fe.code } : undefined);
  }
  return new EdgeFleetError("INTERNAL", "internal server error", undefined, { cause: err });
}

export async function buildHttpApp(deps: HttpDeps): Promise<FastifyInstance> {
  const { log } = deps;
  const app: FastifyInstance = Fastify({
    // pino's Logger and fastify's logger type differ only in generics; the instance is the same.
    loggerInstance: log.child({ component: "http" }) as unknown as FastifyBaseLogger,
    bodyLimit: JSON_BODY_LIMIT,
  });
  const callers = new WeakMap<FastifyRequest, Caller>();
  const callerOf: CallerOf = (req) => callers.get(req) ?? { kind: "admin" };

  // JSON routes take JSON only: without this, fastify's built-in text/plain parser would hand a
  // string to the zod schemas and the caller would get a confusing validation message.
  app.removeContentTypeParser("text/plain");
  // Uploads stream straight to disk; the handler enforces its own (much larger) cap.
  app.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err, req, reply) => {
    const e = toApiError(err);
    const status = httpStatusFor(e.code);
    if (status >= 500) req.log.error({ err }, "request failed");
    else req.log.info({ code: e.code, msg: e.message }, "request rejected");
    if (e.code === "UNAUTHORIZED") reply.header("WWW-Authenticate", 'Bearer realm="edgefleet"');
    if (e.code === "RANGE_NOT_SATISFIABLE") {
      const size = (e.details as { size?: number } | undefined)?.size;
      if (size !== undefined) reply.header("Content-Range", `bytes */${size}`);
    }
    void reply.status(status).type("application/json").send({ error: e.toJSON() });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: "NOT_FOUND", message: `no route ${req.method} ${req.url}` } });
  });

  app.addHook("onRequest", async (req) => {
    if (!req.url.startsWith("/v1/")) return;
    const auth = req.headers.authorization ?? "";
    if (auth.startsWith("Bearer ")) {
      if (sameSecret(auth.slice(7).trim(), deps.adminToken)) return void callers.set(req, { kind: "admin" });
      throw new EdgeFleetError("UNAUTHORIZED", "invalid bearer token");
    }
    // Devices may fetch bundles over HTTP with their MQTT credentials (DESIGN §4), nothing else.
    if (auth.startsWith("Basic ") && req.url.startsWith("/v1/bundles/")) {
      const decoded = Buffer.from(auth.slice(6).trim(), "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      const id = colon > 0 ? decoded.slice(0, colon) : "";
      if (id && (await deps.devices.authenticate(id, decoded.slice(colon + 1)))) {
        return void callers.set(req, { kind: "device", deviceId: id });
      }
      throw new EdgeFleetError("UNAUTHORIZED", "invalid device credentials");
    }
    throw new EdgeFleetError("UNAUTHORIZED", "missing Authorization: Bearer <admin token>");
  });

  app.get("/healthz", async () => ({ status: "ok" }));
  registerModelRoutes(app, deps, callerOf);
  registerDeviceRoutes(app, deps);
  registerRolloutRoutes(app, deps);
  return app;
}
