import { z } from "zod";
import { defineRoute } from "./contract.js";
import { RoleSchema } from "./security.js";

/**
 * The operator dashboard's routes (issue 15, docs/operations.md "Dashboard"): its static page and
 * assets (public: they hold no data), who a token is (so the page knows which actions to offer;
 * the API still refuses them), and the change stream the page follows. The page reads everything
 * else from the same routes fleetctl uses.
 */

/** The assets the page loads; anything else under `/ui/assets/` is refused by the params schema. */
export const DASHBOARD_ASSETS = ["app.js", "app.css"] as const;

/** `GET /v1/session`: who the presented token is. */
export const SessionSchema = z.object({ actor: z.string(), role: RoleSchema });

/**
 * `GET /v1/events?since=N`. `since` is required: the last event id the client saw (0 on its first
 * connection: no replay). The server keeps a short ring of events; a reconnecting client gets what
 * it missed, or a `reset` event when that fell out of the ring (then it reads everything again).
 */
export const EventsQuerySchema = z.object({ since: z.coerce.number().int().min(0) }).strict();

/** `event: rollout`: a rollout's status, stage or counts changed. */
export const RolloutChangeSchema = z.object({
  id: z.string(),
  model: z.string(),
  status: z.string(),
  stage: z.number().int(),
  counts: z.record(z.string(), z.number()),
});
/** `event: device`: a device's presence or per-model state changed (or it was enrolled). */
export const DeviceChangeSchema = z.object({
  id: z.string(),
  presence: z.string(),
  models: z.array(
    z.object({
      model: z.string(),
      state: z.string(),
      committedVersion: z.string().nullable(),
      candidateVersion: z.string().nullable(),
    }),
  ),
});
export type RolloutChange = z.infer<typeof RolloutChangeSchema>;
export type DeviceChange = z.infer<typeof DeviceChangeSchema>;

export const dashboardRoutes = {
  dashboardRedirect: defineRoute({
    operationId: "dashboardRedirect",
    method: "GET",
    path: "/ui",
    tag: "dashboard",
    summary: "Redirects to `/ui/` (what an operator types)",
    responses: { 308: null },
  }),
  getDashboard: defineRoute({
    operationId: "getDashboard",
    method: "GET",
    path: "/ui/",
    tag: "dashboard",
    summary: "The operator dashboard's page (no data: it logs in with an API token and reads the API)",
    responses: { 200: { kind: "text", mediaType: "text/html", description: "The dashboard page" } },
  }),
  getDashboardAsset: defineRoute({
    operationId: "getDashboardAsset",
    method: "GET",
    path: "/ui/assets/:file",
    tag: "dashboard",
    summary: "The dashboard's script and style sheet",
    params: z.object({ file: z.enum(DASHBOARD_ASSETS) }),
    responses: { 200: { kind: "text", mediaType: "text/javascript", description: "app.js or app.css" } },
  }),
  getSession: defineRoute({
    operationId: "getSession",
    method: "GET",
    path: "/v1/session",
    tag: "dashboard",
    summary: "Who the presented token is: its actor and role",
    responses: { 200: SessionSchema },
  }),
  streamEvents: defineRoute({
    operationId: "streamEvents",
    method: "GET",
    path: "/v1/events",
    tag: "dashboard",
    summary: "Server-Sent Events: rollout and device changes as they happen (`event: rollout|device|reset`)",
    query: EventsQuerySchema,
    responses: {
      200: { kind: "text", mediaType: "text/event-stream", description: "One event per change, `id:` its sequence" },
    },
  }),
} as const;
