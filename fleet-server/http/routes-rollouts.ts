import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { CreateRolloutRequestSchema } from "../rollout/definition.js";
import type { HttpDeps } from "./app.js";
import { parseInput } from "./validate.js";

const IdParams = z.object({ id: z.string().min(1).max(64) });
const COMMANDS = ["pause", "resume", "abort", "rollback", "promote"] as const;

export function registerRolloutRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.post("/v1/rollouts", async (req, reply) => {
    const body = parseInput(CreateRolloutRequestSchema, req.body, "body");
    return reply.status(201).send(await deps.rollouts.create(body));
  });
  app.get("/v1/rollouts", async () => deps.rollouts.list());
  app.get("/v1/rollouts/:id", async (req) => deps.rollouts.get(parseInput(IdParams, req.params, "params").id));
  // Operator commands: POST /v1/rollouts/{id}/{pause|resume|abort|rollback|promote}, no body.
  for (const cmd of COMMANDS) {
    app.post(`/v1/rollouts/:id/${cmd}`, async (req) =>
      deps.rollouts[cmd](parseInput(IdParams, req.params, "params").id),
    );
  }
}
