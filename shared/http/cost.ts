import { z } from "zod";
import { ModelNameSchema, SemverSchema } from "../schemas/common.js";
import { defineRoute } from "./contract.js";

/**
 * Cost per prediction (issue 22, docs/operations.md "Cost per prediction"): what devices reported
 * per version (CPU, predictions, memory), bundle bytes the server sent, and money at the server's
 * configured prices. Computed in fleet-server/cost/cost-math.ts.
 */

export const PricesSchema = z.object({
  /** Price of one CPU-hour (one core busy for an hour) on the devices. */
  cpuHour: z.number().min(0),
  /** Price of one GB (10^9 bytes) sent from the server. */
  gbTransferred: z.number().min(0),
  currency: z.string().min(1).max(16),
});

const Count = z.number().int().min(0);
export const CostLineSchema = z.object({
  devices: Count,
  predictions: Count,
  cpuSeconds: z.number().min(0),
  /** CPU-seconds per 1,000 predictions; null before any prediction. */
  cpuSecondsPer1k: z.number().min(0).nullable(),
  /** Sum over devices of each host's time-weighted mean resident memory; null without samples. */
  rssBytes: Count.nullable(),
  /** The largest resident memory one device's host reached. */
  rssMaxBytes: Count.nullable(),
  /** Bundle bytes sent (HTTP Range and MQTT chunks, resumes and retries included). */
  bundleBytes: Count,
  /** Null when the server has no `prices` configured. */
  money: z
    .object({
      currency: z.string(),
      cpu: z.number().min(0),
      transfer: z.number().min(0),
      total: z.number().min(0),
      per1kPredictions: z.number().min(0).nullable(),
    })
    .nullable(),
});

export const ModelCostSchema = z.object({
  model: ModelNameSchema,
  prices: PricesSchema.nullable(),
  /** Per version: every device's figures for it, and every delivery of its bundles. */
  versions: z.array(CostLineSchema.extend({ version: SemverSchema })),
  /** Per rollout: its members' figures for the rollout's version, and their bundle's deliveries to them. */
  rollouts: z.array(
    CostLineSchema.extend({ rolloutId: z.string(), version: SemverSchema, status: z.string(), createdAt: z.string() }),
  ),
});
export type ModelCost = z.infer<typeof ModelCostSchema>;

export const costRoutes = {
  getModelCost: defineRoute({
    operationId: "getModelCost",
    method: "GET",
    path: "/v1/models/:name/cost",
    tag: "models",
    summary:
      "Cost per prediction of a model, per version and per rollout: CPU-seconds per 1,000 predictions, bundle bytes, money",
    params: z.object({ name: ModelNameSchema }),
    query: z.object({ version: SemverSchema.optional() }),
    responses: { 200: ModelCostSchema },
  }),
} as const;
