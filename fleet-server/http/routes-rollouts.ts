import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { CreateRolloutRequestSchema } from "../rollout/rollout-service.js";
import type { HttpDeps } from "./app.js";
import { parseInput } from "./validate.js";

const IdParams = z.object({ id: z.string().min(1).max(64) });

export function registerRolloutRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.post("/v1/rollouts", async (req, reply) => {
    const body = parseInput(CreateRolloutRequestSchema, req.body, "body");
    return reply.status(201).send(await deps.rollouts.create(body));
  });
  app.get("/v1/rollouts", async () => deps.rollouts.list());
  app.get("/v1/rollouts/:id", async (req) => deps.rollouts.get(parseInput(IdParams, req.params, "params").id));
}
