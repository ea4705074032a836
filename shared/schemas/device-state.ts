import { z } from "zod";
import {
  DeviceIdSchema,
  ErrorPayloadSchema,
  IsoTimeSchema,
  ModelNameSchema,
  SemverSchema,
  Sha256Schema,
  VariantSchema,
} from "./common.js";

/** Agent update state machine (DESIGN §5). Persisted on the device; reported to the server. */
export const UPDATE_STATES = [
  "idle",
  "verifying",
  "downloading",
  "staging",
  "loading",
  "smoke-testing",
  "swapping",
  "probation",
  "committed",
  "failed",
  "reverting",
  "reverted",
] as const;
export const UpdateStateSchema = z.enum(UPDATE_STATES);
export type UpdateState = z.infer<typeof UpdateStateSchema>;

export const InstalledRefSchema = z.object({
  version: SemverSchema,
  variant: VariantSchema,
  sha256: Sha256Schema,
  releaseCounter: z.number().int().min(1),
});
export type InstalledRef = z.infer<typeof InstalledRefSchema>;

export const ReportedModelSchema = z.object({
  model: ModelNameSchema,
  state: UpdateStateSchema,
  committed: InstalledRefSchema.nullable(),
  candidate: InstalledRefSchema.nullable(),
  /** Download progress while `downloading`. */
  progress: z.object({ bytes: z.number().int().min(0), total: z.number().int().min(0) }).optional(),
  error: ErrorPayloadSchema.optional(),
  rolloutId: z.string().nullable().default(null),
});
export type ReportedModel = z.infer<typeof ReportedModelSchema>;

/** `fleet/v1/d/{id}/reported` (retained): the device's current truth. */
export const ReportedStateSchema = z.object({
  deviceId: DeviceIdSchema,
  agentVersion: SemverSchema,
  profile: z.string(),
  arch: z.string(),
  ts: IsoTimeSchema,
  lastDesiredSeq: z.number().int().min(0),
  models: z.array(ReportedModelSchema).max(16),
});
export type ReportedState = z.infer<typeof ReportedStateSchema>;

/** `fleet/v1/d/{id}/events`: one update lifecycle transition. */
export const UpdateEventSchema = z.object({
  type: z.literal("update.transition"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  /** Per-device monotonically increasing event number, for de-duplication. */
  eventSeq: z.number().int().min(0),
  model: ModelNameSchema.nullable(),
  bundle: Sha256Schema.nullable(),
  rolloutId: z.string().nullable(),
  from: UpdateStateSchema,
  to: UpdateStateSchema,
  error: ErrorPayloadSchema.optional(),
});
export const DesiredRejectedEventSchema = z.object({
  type: z.literal("desired.rejected"),
  deviceId: DeviceIdSchema,
  ts: IsoTimeSchema,
  eventSeq: z.number().int().min(0),
  seq: z.number().int().nullable(),
  error: ErrorPayloadSchema,
});
export const DeviceEventSchema = z.discriminatedUnion("type", [UpdateEventSchema, DesiredRejectedEventSchema]);
export type DeviceEvent = z.infer<typeof DeviceEventSchema>;

export const PresenceSchema = z.enum(["online", "offline"]);
