import type { FastifyInstance } from "fastify";
import { ROLLOUT_COMMANDS, rolloutRoutes } from "../../shared/http/rollouts.js";
import { parseYamlText, YAML_LIMITS, YAML_MEDIA_TYPES } from "../../shared/structured-text.js";
import type { HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

const COMMAND_ROUTES = {
  pause: rolloutRoutes.pauseRollout,
  resume: rolloutRoutes.resumeRollout,
  abort: rolloutRoutes.abortRollout,
  rollback: rolloutRoutes.rollbackRollout,
  promote: rolloutRoutes.promoteRollout,
} as const;

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
    contractRoute(
      scope,
      rolloutRoutes.createRollout,
      "operator",
      async ({ body, req, reply }) =>
        (await deps.leader?.forward(req, reply, body)) ?? reply.status(201).send(await deps.rollouts.create(body)),
    );
  });
  contractRoute(app, rolloutRoutes.listRollouts, "viewer", async () => deps.rollouts.list());
  contractRoute(app, rolloutRoutes.getRollout, "viewer", async ({ params }) => deps.rollouts.get(params.id));
  // Operator commands: POST /v1/rollouts/{id}/{pause|resume|abort|rollback|promote}, no body.
  for (const cmd of ROLLOUT_COMMANDS) {
    // A standby replica passes commands to the leader (issue 14): only it executes rollouts.
    contractRoute(
      app,
      COMMAND_ROUTES[cmd],
      "operator",
      async ({ params, req, reply }) =>
        (await deps.leader?.forward(req, reply, undefined)) ?? deps.rollouts[cmd](params.id),
    );
  }
}
