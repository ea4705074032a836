import { z } from "zod";
import { DeviceIdSchema, ModelNameSchema, SemverSchema } from "../schemas/common.js";
import { TelemetryRecordSchema } from "../schemas/telemetry.js";
import { defineRoute } from "./contract.js";

/** Telemetry reads of the operator API, version health, drift alerts, and the probes and metrics. */

export const TelemetryRecordsQuerySchema = z
  .object({
    kind: z.enum(["inference", "capture", "event", "drift", "job"]).optional(),
    source: z.enum(["api", "internal", "probe"]).optional(),
    afterSeq: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(5000).default(500),
  })
  .strict();

export const AlertsQuerySchema = z
  .object({
    model: ModelNameSchema.optional(),
    version: SemverSchema.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export const DeviceTelemetrySchema = z.object({
  deviceId: DeviceIdSchema,
  stats: z.object({
    highSeq: z.number().int(),
    stored: z.number().int(),
    duplicates: z.number().int(),
    batches: z.number().int(),
    rejected: z.number().int(),
    lastRejection: z.string().nullable(),
    deviceDropped: z.number().int(),
    lastBatchAt: z.number().nullable(),
  }),
  /** Records matching the kind/source filter (before `afterSeq`). */
  total: z.number().int(),
  /**
   * The records as the device sent them (shared/schemas/telemetry.ts `TelemetryRecordSchema`,
   * validated at ingest and decoded again by the store), oldest first, with their `cohort`.
   */
  records: z.array(z.intersection(TelemetryRecordSchema, z.object({ cohort: z.string().optional() }))),
});

export const AlertSchema = z.object({
  id: z.number().int(),
  ts: z.number(),
  type: z.string(),
  model: z.string(),
  version: z.string(),
  cohort: z.string(),
  feature: z.string(),
  drift: z.string(),
  metric: z.string(),
  value: z.number(),
  threshold: z.number(),
  devices: z.number().int(),
  samples: z.number().int(),
});

const CohortHealthSchema = z.object({
  cohort: z.string(),
  devices: z.number().int(),
  requests: z.number().int(),
  failures: z.number().int(),
  errorRate: z.number().nullable(),
  nonFiniteOutputs: z.number(),
  p50Ms: z.number().nullable(),
  p95Ms: z.number().nullable(),
  p99Ms: z.number().nullable(),
});
const AggregatedFeatureSchema = z.object({
  name: z.string(),
  drift: z.enum(["data", "prediction"]),
  kind: z.enum(["continuous", "categorical"]),
  devices: z.number().int(),
  n: z.number(),
  psi: z.number(),
  ks: z.number().nullable(),
  meanDevicePsi: z.number(),
  maxDevicePsi: z.number(),
});
const DriftSplitSchema = z.object({
  data: z.array(AggregatedFeatureSchema),
  prediction: z.array(AggregatedFeatureSchema),
});

export const VersionHealthSchema = z.object({
  model: ModelNameSchema,
  version: SemverSchema,
  thresholds: z.object({ psi: z.number(), ks: z.number(), clearRatio: z.number(), minSamples: z.number() }),
  total: CohortHealthSchema,
  cohorts: z.array(CohortHealthSchema),
  drift: z.object({
    total: DriftSplitSchema,
    cohorts: z.array(DriftSplitSchema.extend({ cohort: z.string() })),
  }),
  alerts: z.array(AlertSchema),
});

/** The broker check as `/healthz` and `/readyz` show it. */
const BrokerCheckSchema = z.object({
  status: z.enum(["up", "down"]),
  kind: z.enum(["embedded", "external"]),
  since: z.string(),
  disconnects: z.number().int(),
  reason: z.string().optional(),
});
export const ProbeBodySchema = z.object({
  status: z.enum(["ok", "degraded", "ready", "not ready"]),
  checks: z.object({ broker: BrokerCheckSchema }),
});

export const telemetryRoutes = {
  getDeviceTelemetry: defineRoute({
    operationId: "getDeviceTelemetry",
    method: "GET",
    path: "/v1/devices/:id/telemetry",
    tag: "telemetry",
    summary: "A device's telemetry records and ingest counters",
    params: z.object({ id: DeviceIdSchema }),
    query: TelemetryRecordsQuerySchema,
    responses: { 200: DeviceTelemetrySchema },
  }),
  getVersionHealth: defineRoute({
    operationId: "getVersionHealth",
    method: "GET",
    path: "/v1/models/:name/versions/:version/health",
    tag: "telemetry",
    summary: "A model version's health per cohort: requests, error rate, latency percentiles, drift",
    params: z.object({ name: ModelNameSchema, version: SemverSchema }),
    responses: { 200: VersionHealthSchema },
  }),
  listAlerts: defineRoute({
    operationId: "listAlerts",
    method: "GET",
    path: "/v1/telemetry/alerts",
    tag: "telemetry",
    summary: "Drift alerts, newest first",
    query: AlertsQuerySchema,
    responses: { 200: z.object({ alerts: z.array(AlertSchema) }) },
  }),
  metrics: defineRoute({
    operationId: "metrics",
    method: "GET",
    path: "/metrics",
    tag: "health",
    summary: "Prometheus metrics of the server and its fleet",
    responses: { 200: { kind: "text", mediaType: "text/plain; version=0.0.4", description: "Prometheus text format" } },
  }),
  liveness: defineRoute({
    operationId: "liveness",
    method: "GET",
    path: "/healthz",
    tag: "health",
    summary: "Liveness: always 200 while the process serves; `degraded` with the reason when the broker link is down",
    responses: { 200: ProbeBodySchema },
  }),
  readiness: defineRoute({
    operationId: "readiness",
    method: "GET",
    path: "/readyz",
    tag: "health",
    summary: "Readiness: 200 when the broker link is up, 503 with the reason when it is not",
    responses: { 200: ProbeBodySchema, 503: ProbeBodySchema },
  }),
} as const;
