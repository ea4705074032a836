import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DeviceIdSchema } from "../../shared/schemas/common.js";
import type { DeviceService } from "../devices/device-service.js";
import { access } from "../http/route-access.js";
import { parseInput } from "../http/validate.js";
import { isMutating, RoleSchema } from "./roles.js";
import type { Principal, SecurityService } from "./security-service.js";

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

/** Longest raw path kept in an audit entry; the rest is cut (a request line may be 16 KiB). */
const AUDIT_PATH_MAX = 2048;

/**
 * Token, audit, enrollment and revocation routes, plus the audit hook: every mutating call (accepted
 * or refused, authenticated or not, matched or not: issue 20 §1, whatever the URL looks like) is
 * appended to the audit log once its response is sent, with the route the router matched and the
 * path exactly as sent.
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
    if (!isMutating(req.method)) return;
    const principal = deps.principalOf(req);
    const device = deps.deviceOf(req);
    security.audit({
      actor: principal?.actor ?? (device ? `device:${device}` : "anonymous"),
      role: principal?.role ?? null,
      method: req.method,
      route: req.is404 ? null : (req.routeOptions.url ?? null),
      path: (req.url.split("?")[0] ?? req.url).slice(0, AUDIT_PATH_MAX),
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

  app.post("/v1/tokens", access("admin"), async (req, reply) => {
    const body = parseInput(CreateTokenSchema, req.body, "body");
    return reply.status(201).send(security.createToken(body, principal(req)));
  });
  app.get("/v1/tokens", access("admin"), async () => ({ tokens: security.listTokens() }));
  app.delete("/v1/tokens/:id", access("admin"), async (req) =>
    security.revokeToken(parseInput(TokenParams, req.params, "params").id),
  );
  app.get("/v1/audit", access("admin"), async (req) => {
    const q = parseInput(AuditQuery, req.query, "query");
    return { entries: security.listAudit(q.after, q.limit) };
  });

  app.post("/v1/enrollment-tokens", access("operator"), async (req, reply) => {
    const body = parseInput(CreateEnrollmentSchema, req.body ?? {}, "body");
    return reply.status(201).send(security.createEnrollmentToken(body));
  });
  app.post("/v1/enroll", access("public"), async (req, reply) => {
    const body = parseInput(EnrollSchema, req.body, "body");
    // The token first: without a valid one, nothing else about the id is revealed (no 403/409 oracle).
    const grant = security.checkEnrollmentToken(body.token, body.id);
    if (security.isRevoked(body.id)) throw new EdgeFleetError("FORBIDDEN", `device ${body.id} is revoked`);
    // issue 20 §5: a refusal (existing id, lost race) rolls back with the token unspent; the token
    // is spent in the same transaction that stores the device.
    const creds = await deps.devices.enroll(
      { id: body.id, tags: grant.tags, ...(grant.profile !== null ? { profile: grant.profile } : {}) },
      { commit: (store) => security.redeemEnrollmentToken(body.token, body.id, store) },
    );
    return reply.status(201).send(creds);
  });
  app.post("/v1/devices/:id/revoke", access("operator"), async (req) => {
    const { id } = parseInput(DeviceParams, req.params, "params");
    const body = parseInput(RevokeSchema, req.body ?? {}, "body");
    deps.devices.get(id); // NOT_FOUND for an unknown device
    return security.revokeDevice(id, body.reason ?? null);
  });
}
