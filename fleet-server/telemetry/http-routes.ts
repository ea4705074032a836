import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { DeviceIdSchema, ModelNameSchema, SemverSchema } from "../../shared/schemas/common.js";
import { access } from "../http/route-access.js";
import { parseInput } from "../http/validate.js";
import type { TelemetryIngest } from "./telemetry-service.js";

export interface TelemetryHttpDeps {
  ingest: TelemetryIngest;
  deviceExists: (id: string) => boolean;
  /** Prometheus text for `GET /metrics`. */
  metrics: () => Promise<string>;
}

const RecordsQuery = z
  .object({
    kind: z.enum(["inference", "capture", "event", "drift", "job"]).optional(),
    source: z.enum(["api", "internal", "probe"]).optional(),
    afterSeq: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(5000).default(500),
  })
  .strict();
const AlertsQuery = z
  .object({
    model: ModelNameSchema.optional(),
    version: SemverSchema.optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

/** Telemetry reads of the operator API (issue 6) and the server's `/metrics`. */
export function registerTelemetryRoutes(app: FastifyInstance, deps: TelemetryHttpDeps): void {
  app.get("/v1/devices/:id/telemetry", access("viewer"), async (req) => {
    const { id } = parseInput(z.object({ id: DeviceIdSchema }), req.params, "params");
    if (!deps.deviceExists(id)) throw new EdgeFleetError("NOT_FOUND", `device ${id} not found`);
    const q = parseInput(RecordsQuery, req.query, "query");
    return deps.ingest.deviceTelemetry(id, {
      limit: q.limit,
      ...(q.kind ? { kind: q.kind } : {}),
      ...(q.source ? { source: q.source } : {}),
      ...(q.afterSeq !== undefined ? { afterSeq: q.afterSeq } : {}),
    });
  });
  app.get("/v1/models/:name/versions/:version/health", access("viewer"), async (req) => {
    const p = parseInput(z.object({ name: ModelNameSchema, version: SemverSchema }), req.params, "params");
    return deps.ingest.versionHealth(p.name, p.version);
  });
  app.get("/v1/telemetry/alerts", access("viewer"), async (req) => {
    const q = parseInput(AlertsQuery, req.query, "query");
    return {
      alerts: deps.ingest.alerts(
        { ...(q.model ? { model: q.model } : {}), ...(q.version ? { version: q.version } : {}) },
        q.limit,
      ),
    };
  });
  app.get("/metrics", access("public"), async (_req, reply) => {
    void reply.type("text/plain; version=0.0.4");
    return deps.metrics();
  });
}
