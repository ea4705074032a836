import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { fromThrown } from "../../shared/fastify-errors.js";
import type { RouteContract } from "../../shared/http/contract.js";
import { HTTP_API_VERSION, HTTP_ROUTES, metaRoutes } from "../../shared/http/routes.js";
import { httpStatusFor } from "../../shared/http-status.js";
import type { Logger } from "../../shared/logger.js";
import { registerSecurityRoutes } from "../auth/routes-security.js";
import type { Principal, SecurityService } from "../auth/security-service.js";
import type { BlobStore } from "../bundles/bundle-store.js";
import type { LeaderForwarder } from "../cluster/forward-to-leader.js";
import type { CostService } from "../cost/cost-service.js";
import type { DeliveryCounter } from "../cost/delivery-counter.js";
import type { DeviceService } from "../devices/device-service.js";
import type { ProbeAnswer } from "../health/health-decision.js";
import type { BuildTracker } from "../registry/build-tracker.js";
import type { GovernanceService } from "../registry/governance-service.js";
import type { ModelService } from "../registry/model-service.js";
import type { ReleaseSigning } from "../registry/release-signing.js";
import type { RolloutService } from "../rollout/rollout-service.js";
import type { DeviceRepo } from "../store/device-repo.js";
import { registerTelemetryRoutes, type TelemetryHttpDeps } from "../telemetry/http-routes.js";
import { contractRoute, responseProblem } from "./contract-route.js";
import { type OpenApiDocument, openApiDocument } from "./openapi.js";
import {
  type DeclaredRoute,
  decide,
  declarationOf,
  type Presented,
  type RouteAccess,
  RouteAccessSchema,
} from "./route-access.js";
import { registerCostRoutes } from "./routes-cost.js";
import { registerDashboardRoutes } from "./routes-dashboard.js";
import { registerDeviceRoutes } from "./routes-devices.js";
import { registerGovernanceRoutes } from "./routes-governance.js";
import { registerModelRoutes } from "./routes-models.js";
import { registerReleaseRoutes } from "./routes-releases.js";
import { registerRolloutRoutes } from "./routes-rollouts.js";

export interface HttpDeps {
  log: Logger;
  /** The bootstrap admin token; checked by `security.authorizeBearer`. */
  adminToken: string;
  maxUploadBytes: number;
  blobs: BlobStore;
  devices: DeviceService;
  deviceRepo: DeviceRepo;
  models: ModelService;
  /** Async model builds (`POST /v1/models?async=1`, `GET /v1/model-builds/{id}`), kept in SQLite. */
  builds: BuildTracker;
  /** Offline release signing: pending releases and signature uploads (routes-releases.ts). */
  signing?: ReleaseSigning;
  rollouts: RolloutService;
  /** Lifecycle stages, approvals and their policy (issue 21); the pusher of each version is recorded here. */
  governance: GovernanceService;
  /** Tokens with roles, audit log, enrollment tokens, revocation (issue 7, docs/security.md). */
  security: SecurityService;
  /** Operator-supplied certificate and key: serve HTTPS only. */
  https?: { cert: Buffer; key: Buffer };
  /** Telemetry reads, version health, drift alerts and `GET /metrics` (issue 6). */
  telemetry?: TelemetryHttpDeps;
  /** `GET /healthz` (liveness) and `GET /readyz` (readiness), judged on the broker link (issue 20 §4). */
  health: { liveness(): ProbeAnswer; readiness(): ProbeAnswer };
  /**
   * Check every JSON response against the HTTP contract before sending it (shared/http): a mismatch
   * answers 500 INTERNAL and logs which field. For tests and development (`EDGEFLEET_CHECK_RESPONSES=1`);
   * off in production, where a response is typed at compile time instead and not parsed again
   * (docs/http-api.md "Responses").
   */
  checkResponses?: boolean;
  /** Bundle bytes sent over HTTP are counted here (issue 22, cost per prediction). */
  deliveries?: Pick<DeliveryCounter, "add">;
  /** `GET /v1/models/{name}/cost` (issue 22): answers 503 UNAVAILABLE without it. */
  cost?: CostService;
  /** Replicas (issue 14): a standby forwards rollout commands to the leader. Absent: this server leads. */
  leader?: LeaderForwarder;
}

/**
 * Who made a request, as the auth hook established it; devices only reach bundle downloads.
 * A request the hook did not look at is `anonymous`, never a privileged caller (issue 20 §1).
 */
export type Caller =
  | { kind: "token"; principal: Principal }
  | { kind: "device"; deviceId: string }
  | { kind: "anonymous" };
export type CallerOf = (req: FastifyRequest) => Caller;

const routeTables = new WeakMap<FastifyInstance, DeclaredRoute[]>();

/** Every route of an app built by `buildHttpApp` with its declared access, as its `onRoute` hook saw it. */
export function declaredRoutes(app: FastifyInstance): readonly DeclaredRoute[] {
  return routeTables.get(app) ?? [];
}

const JSON_BODY_LIMIT = 8 * 1024 * 1024;
/** Contracts by operation id, for the response check. */
const CONTRACTS: ReadonlyMap<string, RouteContract> = new Map(Object.entries(HTTP_ROUTES));

export async function buildHttpApp(deps: HttpDeps): Promise<FastifyInstance> {
  const { log } = deps;
  // Typed as fastify's logger interface (which pino implements), so the instance gets fastify's
  // default logger type rather than pino's generics.
  const httpLog: FastifyBaseLogger = log.child({ component: "http" });
  const app: FastifyInstance = Fastify({
    loggerInstance: httpLog,
    bodyLimit: JSON_BODY_LIMIT,
    // A device id may be 128 characters (DeviceIdSchema), 3 each when percent-encoded (issue 20 §5:
    // one id grammar); fastify's default of 100 answered 414 to `/v1/devices/{id}` for long ids.
    routerOptions: { maxParamLength: 512 },
    // fastify types an HTTPS instance differently; routes and hooks are the same.
    ...(deps.https ? { https: { ...deps.https, minVersion: "TLSv1.2" as const } } : {}),
  });
  const callers = new WeakMap<FastifyRequest, Caller>();
  const callerOf: CallerOf = (req) => callers.get(req) ?? { kind: "anonymous" };
  const principals = new WeakMap<FastifyRequest, Principal>();
  // Deny by default (issue 20 §1): a route that does not declare who may call it stops the server
  // from starting. Added before any route so it sees every one, also those of child scopes.
  const table: DeclaredRoute[] = [];
  routeTables.set(app, table);
  app.addHook("onRoute", (route) => {
    table.push(...declarationOf(route));
  });

  // JSON routes take JSON only: without this, fastify's built-in text/plain parser would hand a
  // string to the zod schemas and the caller would get a confusing validation message.
  app.removeContentTypeParser("text/plain");
  // Uploads stream straight to disk; the handler enforces its own (much larger) cap.
  app.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err, req, reply) => {
    const e = fromThrown(err);
    const status = httpStatusFor(e.code);
    if (status >= 500) req.log.error({ err }, "request failed");
    else req.log.info({ code: e.code, msg: e.message }, "request rejected");
    if (e.code === "UNAUTHORIZED") reply.header("WWW-Authenticate", 'Bearer realm="edgefleet"');
    if (e.code === "RANGE_NOT_SATISFIABLE") {
      const size = (e.details as { size?: number } | undefined)?.size;
      if (size !== undefined) reply.header("Content-Range", `bytes */${size}`);
    }
    void reply.status(status).type("application/json").send({ error: e.toJSON() });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: "NOT_FOUND", message: `no route ${req.method} ${req.url}` } });
  });

  if (deps.checkResponses) {
    // Development/test check of the contract's response side: every JSON body the server is about
    // to send must parse with the schema its route's contract gives for that status (errors with
    // the error envelope). Runs before serialization, so strings and streams are not looked at.
    app.addHook("preSerialization", async (req, reply, payload) => {
      const operation = req.is404 ? undefined : req.routeOptions.config?.operation;
      const contract = operation === undefined ? undefined : CONTRACTS.get(operation);
      const problem = responseProblem(contract, reply.statusCode, payload);
      if (problem === null) return payload;
      req.log.error({ operation, status: reply.statusCode, problem }, "response does not match the contract");
      throw new EdgeFleetError("INTERNAL", `response does not match the HTTP contract: ${problem}`);
    });
  }

  /** Establishes who is calling; only the schemes `level` accepts are looked at. */
  async function present(req: FastifyRequest, level: RouteAccess | null): Promise<Presented> {
    const auth = req.headers.authorization ?? "";
    if (auth.startsWith("Bearer ")) {
      const principal = deps.security.authenticateBearer(auth.slice(7).trim());
      principals.set(req, principal); // set before the role check, so a refusal is audited with its actor
      callers.set(req, { kind: "token", principal });
      return { kind: "bearer", role: principal.role };
    }
    // Devices may fetch bundles over HTTP with their MQTT credentials (architecture.md §4), nothing else:
    // their password is only checked where a route declares `device-bundle`.
    if (auth.startsWith("Basic ") && level === "device-bundle") {
      const decoded = Buffer.from(auth.slice(6).trim(), "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      const id = colon > 0 ? decoded.slice(0, colon) : "";
      if (id && (await deps.devices.authenticate(id, decoded.slice(colon + 1)))) {
        callers.set(req, { kind: "device", deviceId: id });
        return { kind: "device" };
      }
      throw new EdgeFleetError("UNAUTHORIZED", "invalid device credentials");
    }
    return { kind: "none" };
  }

  // issue 20 §1: the decision comes from the route the router matched (its declared `access`),
  // never from the URL string, which the router decodes before matching (`/%761/devices` is
  // `/v1/devices`). Every request is authenticated, also unknown paths: those answer 404 only to
  // a bearer token, 401 to everyone else, so probing reveals nothing.
  app.addHook("onRequest", async (req) => {
    let level: RouteAccess | null = null;
    if (!req.is404) {
      const declared = RouteAccessSchema.safeParse(req.routeOptions.config?.access);
      // Unreachable while onRoute checks every route; refuse rather than guess if it ever happens.
      if (!declared.success) throw new EdgeFleetError("FORBIDDEN", "route declares no access level");
      level = declared.data;
    }
    if (level === "public") return;
    const route = req.routeOptions.url ?? null;
    const verdict = decide(level, await present(req, level));
    if (verdict === "unauthenticated") {
      throw new EdgeFleetError(
        "UNAUTHORIZED",
        level === "device-bundle"
          ? "missing Authorization: Bearer <token> or Basic <device credentials>"
          : "missing Authorization: Bearer <token>",
      );
    }
    if (verdict === "forbidden") {
      const role = principals.get(req)?.role;
      throw new EdgeFleetError("FORBIDDEN", `role ${role} may not ${req.method} ${route} (needs ${level})`, {
        details: {
          route,
          access: level,
        },
      });
    }
  });

  // Probes are public: an orchestrator asks them without credentials (issue 20 §4).
  contractRoute(app, HTTP_ROUTES.liveness, "public", async ({ reply }) => {
    const answer = deps.health.liveness();
    return reply.status(answer.statusCode).send(answer.body);
  });
  contractRoute(app, HTTP_ROUTES.readiness, "public", async ({ reply }) => {
    const answer = deps.health.readiness();
    return reply.status(answer.statusCode).send(answer.body);
  });
  // Viewer, like every other read of the API: the document names every route, and probing the
  // API's shape without a token should teach no more than probing its paths does (docs/security.md).
  let openApi: OpenApiDocument | null = null;
  contractRoute(app, metaRoutes.getOpenApi, "viewer", async () => {
    // Built on first use, from the route table as it stands once every route is registered.
    openApi ??= openApiDocument({ routes: table, contracts: HTTP_ROUTES, version: HTTP_API_VERSION });
    return openApi;
  });
  registerModelRoutes(app, deps, callerOf);
  registerCostRoutes(app, deps);
  if (deps.signing) registerReleaseRoutes(app, deps.signing);
  registerDeviceRoutes(app, deps);
  registerRolloutRoutes(app, deps);
  registerGovernanceRoutes(app, deps.governance, callerOf);
  if (deps.telemetry) registerTelemetryRoutes(app, deps.telemetry);
  // The operator dashboard (issue 15): its page, who a token is, and the change stream.
  registerDashboardRoutes(app, deps, (req) => principals.get(req));
  registerSecurityRoutes(app, {
    security: deps.security,
    devices: deps.devices,
    principalOf: (req) => principals.get(req),
    deviceOf: (req) => {
      const c = callerOf(req);
      return c?.kind === "device" ? c.deviceId : undefined;
    },
  });
  return app;
}
