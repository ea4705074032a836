import { z } from "zod";

/**
 * API roles (DESIGN §6, issue 7). Pure: `mayCall` decides from the role, method and path alone and
 * is unit-tested without HTTP.
 * - viewer: read-only (GET/HEAD), except the admin-only areas below.
 * - operator: viewer + every change to models, rollouts, devices and enrollment tokens.
 * - admin: everything, including API tokens and the audit log (who may mint credentials and who
 *   may read the record of them are the same people).
 */
export const RoleSchema = z.enum(["admin", "operator", "viewer"]);
export type ApiRole = z.infer<typeof RoleSchema>;

const ADMIN_ONLY_PREFIXES = ["/v1/tokens", "/v1/audit"] as const;
const READ_METHODS = new Set(["GET", "HEAD"]);

export function isMutating(method: string): boolean {
  return !READ_METHODS.has(method.toUpperCase()) && method.toUpperCase() !== "OPTIONS";
}

function pathOnly(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

function underPrefix(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

export function mayCall(role: ApiRole, method: string, url: string): boolean {
  if (role === "admin") return true;
  const path = pathOnly(url);
  if (ADMIN_ONLY_PREFIXES.some((p) => underPrefix(path, p))) return false;
  if (role === "operator") return true;
  return !isMutating(method);
}
