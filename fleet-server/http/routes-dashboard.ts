import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { dashboardRoutes } from "../../shared/http/dashboard.js";
import type { Principal } from "../auth/security-service.js";
import { createDashboardAssets } from "../ui/assets.js";
import { createEventHub } from "../ui/event-hub.js";
import type { HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

/**
 * The page may load its own script and style sheet and talk to this origin, nothing else: no
 * inline script or style, no other origin, no framing (clickjacking), no `<base>`, no forms posting
 * elsewhere. Data is rendered with `textContent`, so an injected string stays text even without
 * the CSP; the CSP is the second wall (docs/security.md "Dashboard").
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function secure(reply: FastifyReply, type: string, cache: string): FastifyReply {
  return reply
    .header("Content-Security-Policy", DASHBOARD_CSP)
    .header("X-Content-Type-Options", "nosniff")
    .header("Referrer-Policy", "no-referrer")
    .header("X-Frame-Options", "DENY")
    .header("Cache-Control", cache)
    .type(type);
}

/** `/ui/` (page and assets, public: they hold no data), `GET /v1/session` and `GET /v1/events` (viewer). */
export function registerDashboardRoutes(
  app: FastifyInstance,
  deps: HttpDeps,
  principalOf: (req: FastifyRequest) => Principal | undefined,
): void {
  const assets = createDashboardAssets();
  const hub = createEventHub(
    {
      rollouts: () =>
        deps.rollouts.list().rollouts.map((r) => ({
          id: r.id,
          model: r.model,
          status: r.status,
          stage: r.stage.number,
          counts: r.counts,
        })),
      devices: () =>
        deps.devices.list().map((d) => ({
          id: d.id,
          presence: d.presence,
          models: d.models.map((m) => ({
            model: m.model,
            state: m.state,
            committedVersion: m.committedVersion,
            candidateVersion: m.candidateVersion,
          })),
        })),
    },
    deps.log.child({ component: "dashboard-events" }),
  );
  // Open streams would hold the server's close forever.
  app.addHook("preClose", async () => hub.close());

  contractRoute(app, dashboardRoutes.dashboardRedirect, "public", async ({ reply }) => reply.redirect("/ui/", 308));
  contractRoute(app, dashboardRoutes.getDashboard, "public", async ({ reply }) => {
    const page = await assets.page();
    return secure(reply, page.type, "no-store").send(page.body);
  });
  contractRoute(app, dashboardRoutes.getDashboardAsset, "public", async ({ params, reply }) => {
    const asset = await assets.asset(params.file);
    return secure(reply, asset.type, "no-cache").send(asset.body);
  });
  contractRoute(app, dashboardRoutes.getSession, "viewer", async ({ req }) => {
    const p = principalOf(req);
    if (!p) throw new EdgeFleetError("UNAUTHORIZED", "missing Authorization: Bearer <token>");
    return { actor: p.actor, role: p.role };
  });
  contractRoute(
    app,
    dashboardRoutes.streamEvents,
    "viewer",
    async ({ query, req, reply }) => {
      // The stream outlives the handler: fastify hands the socket over and sends nothing itself.
      reply.hijack();
      reply.raw.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        Connection: "keep-alive",
      });
      hub.attach(reply.raw, query.since);
      req.log.debug({ since: query.since }, "dashboard event stream opened");
      return reply;
    },
    // No HEAD twin: a stream has no end at which to answer it.
    { exposeHeadRoute: false },
  );
}
