import { z } from "zod";
import { DeviceIdSchema, ErrorPayloadSchema, ModelNameSchema, SemverSchema } from "./common.js";
import { DeviceEventSchema } from "./device-state.js";

/**
 * Telemetry wire format (architecture.md §4–5, docs/protocol.md "Telemetry"): a device buffers records in
 * SQLite, each with a per-device sequence number, and publishes them in batches on
 * `fleet/v1/d/{id}/telemetry`; the server stores them de-duplicated by (device, seq) and answers
 * on `fleet/v1/d/{id}/telemetry/ack`. The device deletes rows only after that ack.
 */

/** Hard cap on one batch's MQTT payload, enforced on both sides. */
export const TELEMETRY_MAX_BATCH_BYTES = 256 * 1024;
/** Hard cap on one record's JSON (captures are truncated to fit). */
export const TELEMETRY_MAX_RECORD_BYTES = 64 * 1024;
export const TELEMETRY_MAX_BATCH_RECORDS = 5000;

const Seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const Ms = z.number().min(0).max(86_400_000);

const Base = { seq: Seq, ts: z.number().int().min(0) };

/** One inference as the agent's runtime saw it. `source: api` = a local client's request. */
export const InferenceRecordSchema = z.object({
  ...Base,
  kind: z.literal("inference"),
  model: ModelNameSchema,
  version: SemverSchema,
  variant: z.string().max(16),
  ok: z.boolean(),
  errorCode: z.string().max(64).optional(),
  computeMs: Ms.nullable(),
  totalMs: Ms,
  nonFinite: z.number().int().min(0),
  probe: z.boolean(),
  source: z.enum(["api", "internal"]),
  /** Small summary of the outputs: per output tensor, min/max/mean over its elements. */
  outputs: z.record(z.string().max(128), z.object({ min: z.number(), max: z.number(), mean: z.number() })).optional(),
});

/** A sampled copy of an inference's inputs and outputs (rate set in the agent config). */
export const CaptureRecordSchema = z.object({
  ...Base,
  kind: z.literal("capture"),
  model: ModelNameSchema,
  version: SemverSchema,
  truncated: z.boolean(),
  inputs: z.record(z.string().max(128), z.object({ shape: z.array(z.number().int()), data: z.array(z.unknown()) })),
  outputs: z.record(z.string().max(128), z.object({ shape: z.array(z.number().int()), data: z.array(z.unknown()) })),
});

/** An update lifecycle event (the same document as on `events`), buffered so none is lost offline. */
export const EventRecordSchema = z.object({ ...Base, kind: z.literal("event"), event: DeviceEventSchema });

export const DriftFeatureReportSchema = z.object({
  name: z.string().min(1).max(64),
  /** input → data drift; output → prediction drift. */
  source: z.enum(["input", "output"]),
  kind: z.enum(["continuous", "categorical"]),
  /** Samples in the window the counts describe. */
  n: z.number().int().min(0),
  /** The device's rolling window, per baseline bin. */
  counts: z.array(z.number().int().min(0)).max(256),
  /** The baseline's proportions per bin, so the server can merge windows without the bundle. */
  expected: z.array(z.number().min(0)).max(256),
  psi: z.number().min(0),
  /** Two-sample KS statistic on the bin grid; continuous features only. */
  ks: z.number().min(0).max(1).nullable(),
});
export type DriftFeatureReport = z.infer<typeof DriftFeatureReportSchema>;

/** A snapshot of the device's drift windows for one model version. */
export const DriftRecordSchema = z.object({
  ...Base,
  kind: z.literal("drift"),
  model: ModelNameSchema,
  version: SemverSchema,
  features: z.array(DriftFeatureReportSchema).min(1).max(64),
});

/** Progress of a scheduled batch job run (issue 8, agent/jobs): start/resume, every 10 %, and its end. */
export const JobRecordSchema = z.object({
  ...Base,
  kind: z.literal("job"),
  job: z.string().min(1).max(64),
  runId: z.string().min(1).max(64),
  phase: z.enum(["started", "resumed", "progress", "completed", "failed"]),
  model: ModelNameSchema,
  /** Version of the last item inferred (null before the first one). */
  version: SemverSchema.nullable(),
  total: z.number().int().min(0),
  done: z.number().int().min(0),
  failed: z.number().int().min(0),
  error: ErrorPayloadSchema.optional(),
});

export const TelemetryRecordSchema = z.discriminatedUnion("kind", [
  InferenceRecordSchema,
  CaptureRecordSchema,
  EventRecordSchema,
  DriftRecordSchema,
  JobRecordSchema,
]);
export type TelemetryRecord = z.infer<typeof TelemetryRecordSchema>;
export type InferenceTelemetry = z.infer<typeof InferenceRecordSchema>;
export type DriftTelemetry = z.infer<typeof DriftRecordSchema>;
export type JobTelemetry = z.infer<typeof JobRecordSchema>;
/** A record before the buffer assigns its sequence number. */
export type UnsequencedRecord = TelemetryRecord extends infer R ? (R extends unknown ? Omit<R, "seq"> : never) : never;

/**
 * `fleet/v1/d/{id}/telemetry`. `firstSeq..lastSeq` is the range the batch covers; records are
 * strictly increasing inside it (gaps are rows the ring dropped). `dropped` is the device's
 * cumulative count of rows evicted before they were acknowledged.
 */
export const TelemetryBatchSchema = z
  .object({
    v: z.literal(1),
    deviceId: DeviceIdSchema,
    firstSeq: Seq,
    lastSeq: Seq,
    sentAt: z.number().int().min(0),
    dropped: z.number().int().min(0),
    records: z.array(z.unknown()).min(1).max(TELEMETRY_MAX_BATCH_RECORDS),
  })
  .strict();
export type TelemetryBatch = Omit<z.infer<typeof TelemetryBatchSchema>, "records"> & { records: TelemetryRecord[] };

/**
 * `fleet/v1/d/{id}/telemetry/ack`. `stored` = new records written, `duplicates` = records the
 * server already had (a re-sent batch). `rejected` batches carry the error; the device deletes
 * acked ranges whatever the status, so a poison batch can never block the buffer.
 */
export const TelemetryAckSchema = z
  .object({
    v: z.literal(1),
    deviceId: DeviceIdSchema,
    firstSeq: Seq,
    lastSeq: Seq,
    status: z.enum(["stored", "rejected"]),
    stored: z.number().int().min(0),
    duplicates: z.number().int().min(0),
    error: ErrorPayloadSchema.optional(),
  })
  .strict();
export type TelemetryAck = z.infer<typeof TelemetryAckSchema>;
