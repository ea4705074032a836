import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { deviceRoutes } from "../../shared/http/devices.js";
import { securityRoutes } from "../../shared/http/security.js";
import type { DeviceService } from "../devices/device-service.js";
import { contractRoute } from "../http/contract-route.js";
import { isMutating } from "./roles.js";
import type { Principal, SecurityService } from "./security-service.js";

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

  contractRoute(app, securityRoutes.createToken, "admin", async ({ body, req, reply }) =>
    reply.status(201).send(security.createToken(body, principal(req))),
  );
  contractRoute(app, securityRoutes.listTokens, "admin", async () => ({ tokens: security.listTokens() }));
  contractRoute(app, securityRoutes.revokeToken, "admin", async ({ params }) => security.revokeToken(params.id));
  contractRoute(app, securityRoutes.listAudit, "admin", async ({ query }) => ({
    entries: security.listAudit(query.after, query.limit),
  }));

  contractRoute(app, securityRoutes.createEnrollmentToken, "operator", async ({ body, reply }) =>
    reply.status(201).send(security.createEnrollmentToken(body)),
  );
  contractRoute(app, securityRoutes.enroll, "public", async ({ body, reply }) => {
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
  contractRoute(app, deviceRoutes.revokeDevice, "operator", async ({ params, body }) => {
    deps.devices.get(params.id); // NOT_FOUND for an unknown device
    return security.revokeDevice(params.id, body.reason ?? null);
  });
}
