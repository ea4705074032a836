import { z } from "zod";
import { DeviceIdSchema, Sha256Schema } from "../schemas/common.js";
import { DeviceEventSchema, ReportedStateSchema, UpdateStateSchema } from "../schemas/device-state.js";
import { defineRoute } from "./contract.js";

/** Device routes: enrollment by an operator, listing, one device's detail, revocation. */

export const TagsSchema = z.record(z.string().min(1).max(64), z.string().max(256));
const ProfileIdSchema = z.string().min(1).max(128);

export const EnrollDeviceRequestSchema = z.object({
  id: DeviceIdSchema,
  tags: TagsSchema.optional(),
  profile: ProfileIdSchema.optional(),
});

/** A device's MQTT credentials: the password is shown once, only its hash is kept. */
export const DeviceCredentialsSchema = z.object({ id: DeviceIdSchema, password: z.string().min(1) });

/** One line per model: what runs and what is happening, from the device's last report. */
const ModelSummarySchema = z.object({
  model: z.string(),
  state: UpdateStateSchema,
  committedVersion: z.string().nullable(),
  candidateVersion: z.string().nullable(),
});

/**
 * One variant's latest usable measurement on a device (fleet-server/store/variant-measurement-repo.ts),
 * what `variant: auto` rollouts choose from.
 */
export const VariantMeasurementSchema = z.object({
  deviceId: DeviceIdSchema,
  model: z.string(),
  variant: z.string(),
  version: z.string(),
  sha256: Sha256Schema,
  p50Ms: z.number(),
  p95Ms: z.number().nullable(),
  requests: z.number().int().min(0),
  measuredAt: z.string(),
});

export const DeviceSummarySchema = z.looseObject({
  id: DeviceIdSchema,
  tags: z.record(z.string(), z.string()),
  profile: z.string().nullable(),
  /** `unknown` while the server cannot see the device's presence (its broker link was lost since). */
  presence: z.enum(["online", "offline", "unknown"]),
  presenceSince: z.string().nullable(),
  lastKnownPresence: z.enum(["online", "offline"]),
  lastSeen: z.string().nullable(),
  createdAt: z.string(),
  desiredSeq: z.number().int().min(0),
  models: z.array(ModelSummarySchema),
});
export type DeviceSummary = z.infer<typeof DeviceSummarySchema>;

export const DeviceDetailSchema = DeviceSummarySchema.extend({
  /** The device's last reported state (shared/schemas/device-state.ts), null before its first report. */
  reported: ReportedStateSchema.nullable(),
  /** Its most recent events (validated when they arrived), newest last. */
  events: z.array(DeviceEventSchema),
  /** What the device measured per model and variant (the latest usable probation figures). */
  variantMeasurements: z.array(VariantMeasurementSchema),
});

export const RevokeDeviceRequestSchema = z.object({ reason: z.string().max(512).optional() }).strict();
export const DeviceRevokedSchema = z.object({
  id: DeviceIdSchema,
  revoked: z.literal(true),
  alreadyRevoked: z.boolean(),
});

const IdParams = z.object({ id: DeviceIdSchema });

/** `tag=key=value` query values (checked by `ListDevicesQuerySchema.shape.tag`) as a tag selector. */
export function tagsFromQuery(tags: readonly string[] | undefined): Record<string, string> | undefined {
  if (!tags) return undefined;
  return Object.fromEntries(tags.map((t) => [t.slice(0, t.indexOf("=")), t.slice(t.indexOf("=") + 1)]));
}

/**
 * `GET /v1/devices` filters and keyset paging (issue 14): ordered by id; `after` is the `next` of the
 * previous page. Without `limit` every matching device is answered (what fleetctl and the dashboard
 * did before paging; at 10,000 devices one such answer costs about a second of server time).
 * `tag=key=value` may be repeated; every pair must match.
 */
export const ListDevicesQuerySchema = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    after: DeviceIdSchema.optional(),
    profile: ProfileIdSchema.optional(),
    presence: z.enum(["online", "offline"]).optional(),
    tag: z
      .union([z.string(), z.array(z.string()).max(16)])
      .optional()
      .transform((v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]))
      .pipe(z.array(z.string().regex(/^[^=]+=.*$/, "tag must be key=value")).optional()),
  })
  .strict();

/** Most devices one `POST /v1/devices/import` takes; fleetctl sends a larger CSV in batches of this size. */
export const IMPORT_BATCH_MAX = 1000;

/**
 * Bulk enrollment (issue 14): each entry is checked on its own (an invalid one fails alone with its
 * index, the rest are enrolled), so entries are `unknown` here and parsed with
 * `EnrollDeviceRequestSchema` by the server.
 */
export const ImportDevicesRequestSchema = z
  .object({ devices: z.array(z.unknown()).min(1).max(IMPORT_BATCH_MAX) })
  .strict();

/** One entry's outcome, by its index in the request: the password (shown once) or why it was refused. */
export const ImportResultSchema = z.discriminatedUnion("ok", [
  z.object({ index: z.number().int().min(0), ok: z.literal(true), id: DeviceIdSchema, password: z.string().min(1) }),
  z.object({
    index: z.number().int().min(0),
    ok: z.literal(false),
    id: z.string().nullable(),
    error: z.object({ code: z.string(), message: z.string() }),
  }),
]);
export type ImportResult = z.infer<typeof ImportResultSchema>;

export const ImportDevicesResponseSchema = z.object({
  enrolled: z.number().int().min(0),
  failed: z.number().int().min(0),
  results: z.array(ImportResultSchema),
});

export const deviceRoutes = {
  enrollDevice: defineRoute({
    operationId: "enrollDevice",
    method: "POST",
    path: "/v1/devices",
    tag: "devices",
    summary: "Enroll a device; answers its MQTT password once",
    body: EnrollDeviceRequestSchema,
    responses: { 201: DeviceCredentialsSchema },
  }),
  listDevices: defineRoute({
    operationId: "listDevices",
    method: "GET",
    path: "/v1/devices",
    tag: "devices",
    summary: "Devices with presence and models: all, or one page (limit, after) filtered by profile, presence, tags",
    query: ListDevicesQuerySchema,
    responses: {
      200: z.object({
        devices: z.array(DeviceSummarySchema),
        /** The `after` of the next page; null on the last page (or without `limit`). */
        next: DeviceIdSchema.nullable().optional(),
      }),
    },
  }),
  getDevice: defineRoute({
    operationId: "getDevice",
    method: "GET",
    path: "/v1/devices/:id",
    tag: "devices",
    summary: "One device: its summary, last reported state, recent events and measurements",
    params: IdParams,
    responses: { 200: DeviceDetailSchema },
  }),
  importDevices: defineRoute({
    operationId: "importDevices",
    method: "POST",
    path: "/v1/devices/import",
    tag: "devices",
    summary: `Enroll up to ${IMPORT_BATCH_MAX} devices; answers each one's password once, or why it was refused`,
    body: ImportDevicesRequestSchema,
    responses: { 200: ImportDevicesResponseSchema },
  }),
  revokeDevice: defineRoute({
    operationId: "revokeDevice",
    method: "POST",
    path: "/v1/devices/:id/revoke",
    tag: "devices",
    summary: "Revoke a device: disconnect it, clear its retained messages, refuse it from now on",
    params: IdParams,
    body: RevokeDeviceRequestSchema,
    bodyOptional: true,
    responses: { 200: DeviceRevokedSchema },
  }),
} as const;
