import { type ApiRole, RoleSchema } from "../../shared/http/security.js";

/**
 * API roles (architecture.md §6, issue 7), ordered: each role has every right of the ones before it.
 * - viewer: read-only.
 * - operator: viewer + every change to models, rollouts, devices and enrollment tokens.
 * - admin: everything, including API tokens and the audit log (who may mint credentials and who
 *   may read the record of them are the same people).
 * Which role a route needs is declared on the route itself (fleet-server/http/route-access.ts,
 * issue 20 §1), never derived from the URL.
 */
// The role names are part of the HTTP contract (token routes), so the schema lives in shared/http.
export { type ApiRole, RoleSchema };

const RANK: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };

/** Pure: whether `role` has at least the rights of `needed`. */
export function roleMeets(role: ApiRole, needed: ApiRole): boolean {
  return RANK[role] >= RANK[needed];
}

export function isMutating(method: string): boolean {
  const m = method.toUpperCase();
  return m !== "GET" && m !== "HEAD" && m !== "OPTIONS";
}
