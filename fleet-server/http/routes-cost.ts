import type { FastifyInstance } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { costRoutes } from "../../shared/http/cost.js";
import type { HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

/** `GET /v1/models/{name}/cost[?version=]` (issue 22): a read like the other model reads, viewer role. */
export function registerCostRoutes(app: FastifyInstance, deps: Pick<HttpDeps, "cost">): void {
  contractRoute(app, costRoutes.getModelCost, "viewer", async ({ params, query }) => {
    if (!deps.cost) throw new EdgeFleetError("INTERNAL", "cost accounting is not configured on this server");
    return deps.cost.modelCost(params.name, query.version);
  });
}
