import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { DeviceIdSchema } from "../../shared/schemas/common.js";
import type { HttpDeps } from "./app.js";
import { access } from "./route-access.js";
import { parseInput } from "./validate.js";

export const EnrollDeviceRequestSchema = z.object({
  id: DeviceIdSchema,
  tags: z.record(z.string().min(1).max(64), z.string().max(256)).optional(),
  profile: z.string().min(1).max(128).optional(),
});
const IdParams = z.object({ id: DeviceIdSchema });

export function registerDeviceRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.post("/v1/devices", access("operator"), async (req, reply) => {
    const body = parseInput(EnrollDeviceRequestSchema, req.body, "body");
    return reply.status(201).send(await deps.devices.enroll(body));
  });
  app.get("/v1/devices", access("viewer"), async () => ({ devices: deps.devices.list() }));
  app.get("/v1/devices/:id", access("viewer"), async (req) =>
    deps.devices.get(parseInput(IdParams, req.params, "params").id),
  );
}
