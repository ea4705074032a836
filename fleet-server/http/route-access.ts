import type { RouteOptions } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { type ApiRole, roleMeets } from "../auth/roles.js";

/**
 * Who may call a route (issue 20 §1). Every route declares one level in its options,
 * `config: { access }`; the auth hook reads the *matched* route's declaration
 * (`req.routeOptions.config`), never the URL string, and a route without one fails at startup.
 *
 * - `public`: no credentials (`/healthz`, `/metrics`, `POST /v1/enroll` which checks its own token).
 * - `device-bundle`: a device with its MQTT credentials (HTTP Basic; the handler then checks the
 *   bundle is assigned to it), or any bearer token. Read-only methods.
 * - `viewer`: any bearer token (viewer, operator, admin). Read-only methods.
 * - `operator`: operator or admin token: every change to models, rollouts, devices, enrollment.
 * - `admin`: admin token only: API tokens and the audit log.
 */
export const RouteAccessSchema = z.enum(["public", "device-bundle", "viewer", "operator", "admin"]);
export type RouteAccess = z.infer<typeof RouteAccessSchema>;

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call this route (fleet-server/http/route-access.ts). Required on every route. */
    access?: RouteAccess;
    /** The route's `operationId` in the HTTP contract (shared/http/routes.ts), set by `contractRoute`. */
    operation?: string;
  }
}

/** Route options declaring `level`: `app.get("/v1/x", access("viewer"), handler)`. */
export function access(level: RouteAccess): { config: { access: RouteAccess } } {
  return { config: { access: level } };
}

const READ_ONLY = new Set(["GET", "HEAD"]);

/** One registered route and its declaration, as the `onRoute` hook saw it. */
export interface DeclaredRoute {
  method: string;
  url: string;
  access: RouteAccess;
  /** The contract the route implements (shared/http/routes.ts); null for a route registered without one. */
  operation: string | null;
}

/**
 * The `onRoute` check (deny by default): a route without a valid `config.access` throws, so the
 * server does not start. Levels meant for reading (`viewer`, `device-bundle`) on a method that
 * changes something are refused too, so a viewer can never be given a write by a typo.
 */
export function declarationOf(route: Pick<RouteOptions, "method" | "url" | "config">): DeclaredRoute[] {
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => String(m).toUpperCase());
  const parsed = RouteAccessSchema.safeParse((route.config as { access?: unknown } | undefined)?.access);
  if (!parsed.success) {
    throw new EdgeFleetError(
      "INTERNAL",
      `route ${methods.join(",")} ${route.url} declares no access level (config.access: ${RouteAccessSchema.options.join(" | ")})`,
    );
  }
  if ((parsed.data === "viewer" || parsed.data === "device-bundle") && methods.some((m) => !READ_ONLY.has(m))) {
    throw new EdgeFleetError("INTERNAL", `route ${methods.join(",")} ${route.url}: ${parsed.data} access is read-only`);
  }
  const operation = (route.config as { operation?: unknown } | undefined)?.operation;
  return methods.map((method) => ({
    method,
    url: route.url,
    access: parsed.data,
    operation: typeof operation === "string" ? operation : null,
  }));
}

/** Credentials the hook established for a request, before the route's level is applied. */
export type Presented = { kind: "none" } | { kind: "bearer"; role: ApiRole } | { kind: "device" };

/**
 * The decision, pure: `ok`, `unauthenticated` (401: no credentials this level accepts) or
 * `forbidden` (403: authenticated, role too low). `null` access is the not-found route: any bearer
 * token may learn that a path does not exist, nobody else (issue 20 §1: probing reveals nothing).
 */
export function decide(level: RouteAccess | null, who: Presented): "ok" | "unauthenticated" | "forbidden" {
  if (level === "public") return "ok";
  if (level === "device-bundle" && who.kind === "device") return "ok";
  if (who.kind !== "bearer") return "unauthenticated";
  if (level === null || level === "device-bundle" || level === "viewer") return "ok";
  return roleMeets(who.role, level) ? "ok" : "forbidden";
}
