import type { FastifyInstance } from "fastify";
import { deviceRoutes, tagsFromQuery } from "../../shared/http/devices.js";
import type { HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

export { EnrollDeviceRequestSchema } from "../../shared/http/devices.js";

export function registerDeviceRoutes(app: FastifyInstance, deps: HttpDeps): void {
  contractRoute(app, deviceRoutes.enrollDevice, "operator", async ({ body, reply }) =>
    reply.status(201).send(await deps.devices.enroll(body)),
  );
  contractRoute(app, deviceRoutes.importDevices, "operator", async ({ body }) => deps.devices.enrollMany(body.devices));
  contractRoute(app, deviceRoutes.listDevices, "viewer", async ({ query }) => {
    const tags = tagsFromQuery(query.tag);
    const filtered = query.profile !== undefined || query.presence !== undefined || tags !== undefined;
    if (query.limit === undefined && query.after === undefined && !filtered) return { devices: deps.devices.list() };
    const q = {
      limit: query.limit ?? Number.MAX_SAFE_INTEGER,
      ...(query.after !== undefined ? { after: query.after } : {}),
      ...(query.profile !== undefined ? { profile: query.profile } : {}),
      ...(query.presence !== undefined ? { presence: query.presence } : {}),
      ...(tags ? { tags } : {}),
    };
    return deps.devices.page(q);
  });
  contractRoute(app, deviceRoutes.getDevice, "viewer", async ({ params }) => deps.devices.get(params.id));
}
