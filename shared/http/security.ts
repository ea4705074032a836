import { z } from "zod";
import { DeviceIdSchema } from "../schemas/common.js";
import { defineRoute } from "./contract.js";
import { DeviceCredentialsSchema, TagsSchema } from "./devices.js";

/** API tokens, the audit log, and device enrollment tokens (docs/security.md). */

/** API roles, ordered: each has every right of the ones before it (viewer < operator < admin). */
export const RoleSchema = z.enum(["admin", "operator", "viewer"]);
export type ApiRole = z.infer<typeof RoleSchema>;

export const CreateTokenRequestSchema = z.object({ name: z.string().min(1).max(128), role: RoleSchema }).strict();
/** A new token: `token` is shown once, only its hash is stored. */
export const CreatedTokenSchema = z.object({ id: z.string(), name: z.string(), role: RoleSchema, token: z.string() });
export const ApiTokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  role: RoleSchema,
  createdAt: z.string(),
  createdBy: z.string(),
  revokedAt: z.string().nullable(),
});

export const AuditQuerySchema = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});
export const AuditEntrySchema = z.object({
  seq: z.number().int(),
  at: z.string(),
  actor: z.string(),
  role: z.string().nullable(),
  method: z.string(),
  /** The route pattern the router matched (`/v1/tokens/:id`), null when none did. */
  route: z.string().nullable(),
  /** The path as the client sent it (no query). */
  path: z.string(),
  status: z.number().int(),
  errorCode: z.string().nullable(),
  remote: z.string().nullable(),
});

export const CreateEnrollmentTokenRequestSchema = z
  .object({
    deviceId: DeviceIdSchema.optional(),
    tags: TagsSchema.optional(),
    profile: z.string().min(1).max(128).optional(),
    ttlSeconds: z.number().int().min(60).default(3600),
  })
  .strict();
export const EnrollmentTokenSchema = z.object({
  id: z.string(),
  token: z.string(),
  expiresAt: z.string(),
  deviceId: DeviceIdSchema.nullable(),
});
export const EnrollRequestSchema = z.object({ token: z.string().min(16).max(256), id: DeviceIdSchema }).strict();

export const securityRoutes = {
  createToken: defineRoute({
    operationId: "createToken",
    method: "POST",
    path: "/v1/tokens",
    tag: "security",
    summary: "Create an API token with a role; answers the token once",
    body: CreateTokenRequestSchema,
    responses: { 201: CreatedTokenSchema },
  }),
  listTokens: defineRoute({
    operationId: "listTokens",
    method: "GET",
    path: "/v1/tokens",
    tag: "security",
    summary: "Every API token (never its value)",
    responses: { 200: z.object({ tokens: z.array(ApiTokenSchema) }) },
  }),
  revokeToken: defineRoute({
    operationId: "revokeToken",
    method: "DELETE",
    path: "/v1/tokens/:id",
    tag: "security",
    summary: "Revoke an API token",
    params: z.object({ id: z.string().regex(/^[0-9a-f]{16}$/) }),
    responses: { 200: z.object({ id: z.string(), revoked: z.literal(true) }) },
  }),
  listAudit: defineRoute({
    operationId: "listAudit",
    method: "GET",
    path: "/v1/audit",
    tag: "security",
    summary: "The audit log of mutating API calls, accepted or refused",
    query: AuditQuerySchema,
    responses: { 200: z.object({ entries: z.array(AuditEntrySchema) }) },
  }),
  createEnrollmentToken: defineRoute({
    operationId: "createEnrollmentToken",
    method: "POST",
    path: "/v1/enrollment-tokens",
    tag: "security",
    summary: "Create a one-time token a device exchanges for its credentials (POST /v1/enroll)",
    body: CreateEnrollmentTokenRequestSchema,
    bodyOptional: true,
    responses: { 201: EnrollmentTokenSchema },
  }),
  enroll: defineRoute({
    operationId: "enroll",
    method: "POST",
    path: "/v1/enroll",
    tag: "security",
    summary: "A device exchanges a one-time enrollment token for its MQTT credentials",
    body: EnrollRequestSchema,
    responses: { 201: DeviceCredentialsSchema },
  }),
} as const;
