import type { FastifyInstance } from "fastify";
import { deviceRoutes } from "../../shared/http/devices.js";
import type { HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

export { EnrollDeviceRequestSchema } from "../../shared/http/devices.js";

export function registerDeviceRoutes(app: FastifyInstance, deps: HttpDeps): void {
  contractRoute(app, deviceRoutes.enrollDevice, "operator", async ({ body, reply }) =>
    reply.status(201).send(await deps.devices.enroll(body)),
  );
  contractRoute(app, deviceRoutes.importDevices, "operator", async ({ body }) => deps.devices.enrollMany(body.devices));
  contractRoute(app, deviceRoutes.listDevices, "viewer", async () => ({ devices: deps.devices.list() }));
  contractRoute(app, deviceRoutes.getDevice, "viewer", async ({ params }) => deps.devices.get(params.id));
}
