import type { FastifyInstance, FastifyRequest } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { governanceRoutes } from "../../shared/http/governance.js";
import type { GovernanceService } from "../registry/governance-service.js";
import type { CallerOf } from "./app.js";
import { contractRoute } from "./contract-route.js";

/**
 * Lifecycle and approval routes (issue 21). Reviews and stage changes are mutating calls, so the
 * audit hook records each one (actor, route, status) like any other; the review's comment and
 * decision are kept in `version_reviews`, the stage changes in `version_stage_events`.
 *
 * Access: reading is viewer; reviewing and moving stages is operator (the people who ship); the
 * policy itself is admin, so the operators it governs cannot waive it.
 */
export function registerGovernanceRoutes(
  app: FastifyInstance,
  governance: GovernanceService,
  callerOf: CallerOf,
): void {
  const actorOf = (req: FastifyRequest): string => {
    const c = callerOf(req);
    // The access hook lets only bearer tokens through to these routes; this is the second lock.
    if (c.kind !== "token") throw new EdgeFleetError("UNAUTHORIZED", "a bearer token is required");
    return c.principal.actor;
  };

  contractRoute(app, governanceRoutes.getVersionGovernance, "viewer", async ({ params }) =>
    governance.view(params.name, params.version),
  );
  contractRoute(app, governanceRoutes.setVersionStage, "operator", async ({ params, body, req }) =>
    governance.setStage(params.name, params.version, body.stage, actorOf(req), body.comment),
  );
  contractRoute(app, governanceRoutes.approveVersion, "operator", async ({ params, body, req }) =>
    governance.review(params.name, params.version, actorOf(req), "approve", body.comment),
  );
  contractRoute(app, governanceRoutes.refuseVersion, "operator", async ({ params, body, req }) =>
    governance.review(params.name, params.version, actorOf(req), "refuse", body.comment),
  );
  contractRoute(app, governanceRoutes.getApprovalPolicy, "viewer", async ({ params }) =>
    governance.policyView(params.name),
  );
  contractRoute(app, governanceRoutes.setApprovalPolicy, "admin", async ({ params, body, req }) =>
    governance.setPolicy(params.name, body, actorOf(req)),
  );
  contractRoute(app, governanceRoutes.listStaleDevices, "viewer", async ({ query }) =>
    governance.staleDevices(query.model),
  );
}
