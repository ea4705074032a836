import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { parseYamlText, YAML_LIMITS, YAML_MEDIA_TYPES } from "../../shared/structured-text.js";
import { CreateRolloutRequestSchema } from "../rollout/definition.js";
import type { HttpDeps } from "./app.js";
import { access } from "./route-access.js";
import { parseInput } from "./validate.js";

const IdParams = z.object({ id: z.string().min(1).max(64) });
const COMMANDS = ["pause", "resume", "abort", "rollback", "promote"] as const;

export function registerRolloutRoutes(app: FastifyInstance, deps: HttpDeps): void {
  // Operators keep rollout definitions as YAML files too. The YAML parser is registered in its own
  // encapsulated scope, so only this route reads YAML: every other JSON route keeps refusing it as
  // an unsupported media type instead of handing its schema a value in a format it never documented.
  void app.register(async (scope) => {
    scope.addContentTypeParser(
      [...YAML_MEDIA_TYPES],
      { parseAs: "string", bodyLimit: YAML_LIMITS.maxSourceBytes },
      (_req, body, done) => {
        try {
          done(null, parseYamlText(body as string, "body"));
        } catch (err) {
          done(err as Error, undefined);
        }
      },
    );
    // The same schema for both formats, so a YAML definition gets the same 400s with the same paths.
    scope.post("/v1/rollouts", access("operator"), async (req, reply) => {
      const body = parseInput(CreateRolloutRequestSchema, req.body, "body");
      return reply.status(201).send(await deps.rollouts.create(body));
    });
  });
  app.get("/v1/rollouts", access("viewer"), async () => deps.rollouts.list());
  app.get("/v1/rollouts/:id", access("viewer"), async (req) =>
    deps.rollouts.get(parseInput(IdParams, req.params, "params").id),
  );
  // Operator commands: POST /v1/rollouts/{id}/{pause|resume|abort|rollback|promote}, no body.
  for (const cmd of COMMANDS) {
    app.post(`/v1/rollouts/:id/${cmd}`, access("operator"), async (req) =>
      deps.rollouts[cmd](parseInput(IdParams, req.params, "params").id),
    );
  }
}
