import type { FastifyInstance } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { telemetryRoutes } from "../../shared/http/telemetry.js";
import { contractRoute } from "../http/contract-route.js";
import type { TelemetryIngest } from "./telemetry-service.js";

export interface TelemetryHttpDeps {
  ingest: TelemetryIngest;
  deviceExists: (id: string) => boolean;
  /** Prometheus text for `GET /metrics`. */
  metrics: () => Promise<string>;
}

/** Telemetry reads of the operator API (issue 6) and the server's `/metrics`. */
export function registerTelemetryRoutes(app: FastifyInstance, deps: TelemetryHttpDeps): void {
  contractRoute(app, telemetryRoutes.getDeviceTelemetry, "viewer", async ({ params, query: q }) => {
    if (!deps.deviceExists(params.id)) throw new EdgeFleetError("NOT_FOUND", `device ${params.id} not found`);
    return deps.ingest.deviceTelemetry(params.id, {
      limit: q.limit,
      ...(q.kind ? { kind: q.kind } : {}),
      ...(q.source ? { source: q.source } : {}),
      ...(q.afterSeq !== undefined ? { afterSeq: q.afterSeq } : {}),
    });
  });
  contractRoute(app, telemetryRoutes.getVersionHealth, "viewer", async ({ params }) =>
    deps.ingest.versionHealth(params.name, params.version),
  );
  contractRoute(app, telemetryRoutes.listAlerts, "viewer", async ({ query: q }) => ({
    alerts: deps.ingest.alerts(
      { ...(q.model ? { model: q.model } : {}), ...(q.version ? { version: q.version } : {}) },
      q.limit,
    ),
  }));
  contractRoute(app, telemetryRoutes.metrics, "public", async ({ reply }) =>
    reply.type("text/plain; version=0.0.4").send(await deps.metrics()),
  );
}
