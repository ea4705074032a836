import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DeviceIdSchema } from "../../shared/schemas/common.js";
import type { DeviceService } from "../devices/device-service.js";
import { parseInput } from "../http/validate.js";
import { isMutating, RoleSchema } from "./roles.js";
import type { Principal, SecurityService } from "./security-service.js";

/** The one unauthenticated mutating route: a device spends its one-time enrollment token. */
export const PUBLIC_ROUTES: readonly { method: string; path: string }[] = [{ method: "POST", path: "/v1/enroll" }];

export function isPublicRoute(method: string, url: string): boolean {
  const path = url.split("?")[0];
  return PUBLIC_ROUTES.some((r) => r.method === method.toUpperCase() && r.path === path);
}

const CreateTokenSchema = z.object({ name: z.string().min(1).max(128), role: RoleSchema }).strict();
const TokenParams = z.object({ id: z.string().regex(/^[0-9a-f]{16}$/) });
const AuditQuery = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});
const Tags = z.record(z.string().min(1).max(64), z.string().max(256));
const CreateEnrollmentSchema = z
  .object({
    deviceId: DeviceIdSchema.optional(),
    tags: Tags.optional(),
    profile: z.string().min(1).max(128).optional(),
    ttlSeconds: z.number().int().min(60).default(3600),
  })
  .strict();
const EnrollSchema = z.object({ token: z.string().min(16).max(256), id: DeviceIdSchema }).strict();
const DeviceParams = z.object({ id: DeviceIdSchema });
const RevokeSchema = z.object({ reason: z.string().max(512).optional() }).strict();

export interface SecurityRouteDeps {
  security: SecurityService;
  devices: DeviceService;
  /** The principal the auth hook attached, if any. */
  principalOf(req: FastifyRequest): Principal | undefined;
  /** The device the auth hook attached (bundle downloads with device credentials). */
  deviceOf(req: FastifyRequest): string | undefined;
}

function errorCodeOf(payload: unknown): string | null {
  if (typeof payload !== "string" || !payload.startsWith('{"error"')) return null;
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : null;
  } catch {
    return null;
  }
}

/**
 * Token, audit, enrollment and revocation routes, plus the audit hook: every mutating `/v1/` call
 * (accepted or refused, authenticated or not) is appended to the audit log once its response is sent.
 */
export function registerSecurityRoutes(app: FastifyInstance, deps: SecurityRouteDeps): void {
  const { security } = deps;
  const errorCodes = new WeakMap<FastifyRequest, string>();

  app.addHook("onSend", async (req, reply: FastifyReply, payload) => {
    if (reply.statusCode >= 400) {
      const code = errorCodeOf(payload);
      if (code) errorCodes.set(req, code);
    }
    return payload;
  });
  app.addHook("onResponse", async (req, reply) => {
    if (!req.url.startsWith("/v1/") || !isMutating(req.method)) return;
    const principal = deps.principalOf(req);
    const device = deps.deviceOf(req);
    security.audit({
      actor: principal?.actor ?? (device ? `device:${device}` : "anonymous"),
      role: principal?.role ?? null,
      method: req.method,
      path: req.url.split("?")[0] ?? req.url,
      status: reply.statusCode,
      errorCode: errorCodes.get(req) ?? null,
      remote: req.ip ?? null,
    });
  });

  const principal = (req: FastifyRequest): Principal => {
    const p = deps.principalOf(req);
    if (!p) throw new EdgeFleetError("UNAUTHORIZED", "operator token required");
    return p;
  };

  app.post("/v1/tokens", async (req, reply) => {
    const body = parseInput(CreateTokenSchema, req.body, "body");
    return reply.status(201).send(security.createToken(body, principal(req)));
  });
  app.get("/v1/tokens", async () => ({ tokens: security.listTokens() }));
  app.delete("/v1/tokens/:id", async (req) => security.revokeToken(parseInput(TokenParams, req.params, "params").id));
  app.get("/v1/audit", async (req) => {
    const q = parseInput(AuditQuery, req.query, "query");
    return { entries: security.listAudit(q.after, q.limit) };
  });

  app.post("/v1/enrollment-tokens", async (req, reply) => {
    const body = parseInput(CreateEnrollmentSchema, req.body ?? {}, "body");
    return reply.status(201).send(security.createEnrollmentToken(body));
  });
  app.post("/v1/enroll", async (req, reply) => {
    const body = parseInput(EnrollSchema, req.body, "body");
    if (security.isRevoked(body.id)) throw new EdgeFleetError("FORBIDDEN", `device ${body.id} is revoked`);
    const grant = security.consumeEnrollmentToken(body.token, body.id);
    const creds = await deps.devices.enroll({
      id: body.id,
      tags: grant.tags,
      ...(grant.profile !== null ? { profile: grant.profile } : {}),
    });
    return reply.status(201).send(creds);
  });
  app.post("/v1/devices/:id/revoke", async (req) => {
    const { id } = parseInput(DeviceParams, req.params, "params");
    const body = parseInput(RevokeSchema, req.body ?? {}, "body");
    deps.devices.get(id); // NOT_FOUND for an unknown device
    return security.revokeDevice(id, body.reason ?? null);
  });
}
