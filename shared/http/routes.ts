import { z } from "zod";
import { defineRoute, type RouteContract } from "./contract.js";
import { costRoutes } from "./cost.js";
import { dashboardRoutes } from "./dashboard.js";
import { deviceRoutes } from "./devices.js";
import { governanceRoutes } from "./governance.js";
import { modelRoutes } from "./models.js";
import { releaseRoutes } from "./releases.js";
import { rolloutRoutes } from "./rollouts.js";
import { securityRoutes } from "./security.js";
import { telemetryRoutes } from "./telemetry.js";

/** Version of the `/v1` contract in the OpenAPI document's `info.version`: minor for additions, major for breaks. */
export const HTTP_API_VERSION = "1.2.0";

/** `GET /v1/openapi.json`: the OpenAPI 3.1 document of this contract (fleet-server/http/openapi.ts). */
export const OpenApiDocumentSchema = z.looseObject({
  openapi: z.string().regex(/^3\.1\.\d+$/),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.record(z.string(), z.unknown())),
});

export const metaRoutes = {
  getOpenApi: defineRoute({
    operationId: "getOpenApi",
    method: "GET",
    path: "/v1/openapi.json",
    tag: "meta",
    summary: "This API as an OpenAPI 3.1 document, generated from the same schemas the server validates with",
    responses: { 200: OpenApiDocumentSchema },
  }),
} as const;

/**
 * Every route of the fleet server's HTTP API, by operation id. A route the server registers
 * without an entry here fails `test/integration/fleet-server/http-contract.test.ts`, and every
 * entry must be registered by the server (both directions are checked against its route table).
 */
export const HTTP_ROUTES = {
  ...modelRoutes,
  ...releaseRoutes,
  ...deviceRoutes,
  ...rolloutRoutes,
  ...telemetryRoutes,
  ...securityRoutes,
  ...metaRoutes,
  ...dashboardRoutes,
  ...governanceRoutes,
  ...costRoutes,
} as const;
export type HttpRoutes = typeof HTTP_ROUTES;
export type OperationId = keyof HttpRoutes;

/** Every contract, for code that walks them all (the OpenAPI generator, tests). */
export const ALL_ROUTES: readonly RouteContract[] = Object.values(HTTP_ROUTES);
