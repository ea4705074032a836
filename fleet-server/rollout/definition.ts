import {
  AbortSchema,
  type CreateRolloutRequest,
  DeadlinesSchema,
  StageSchema,
  type StoredRolloutDefinition,
} from "../../shared/http/rollout-definition.js";
import { HealthPolicySchema } from "../../shared/schemas/desired-state.js";

// The request schemas are part of the HTTP contract (shared/http/rollout-definition.ts); the
// server's side of a definition (defaults applied, selector matching) stays here.
export {
  AbortSchema,
  AUTO_VARIANT,
  type CreateRolloutRequest,
  CreateRolloutRequestSchema,
  DeadlinesSchema,
  type Gates,
  GatesSchema,
  type MaintenanceWindow,
  MaintenanceWindowSchema,
  type Rate,
  RateSchema,
  RolloutDefinitionSchema,
  type Selector,
  SelectorSchema,
  STRATEGIES,
  type Stage,
  StageSchema,
  type StrategyName,
} from "../../shared/http/rollout-definition.js";

/**
 * The stored, fully defaulted definition the planner works from; its schema is part of the
 * contract (shared/http/rollout-definition.ts `RolloutDefinitionSchema`) and the store decodes
 * the `definition` column with it.
 */
export type RolloutDefinition = StoredRolloutDefinition;

export function normalizeDefinition(r: CreateRolloutRequest): RolloutDefinition {
  const strategy = r.strategy ?? (r.stages ? "canary" : "all-at-once");
  const stages = r.stages ?? [StageSchema.parse({ percent: 100 })];
  const healthPolicy = HealthPolicySchema.parse(r.healthPolicy ?? {});
  const deadlines = DeadlinesSchema.parse(r.deadlines ?? {});
  // A probation deadline shorter than the probation itself could never be met.
  if (r.deadlines?.probationSeconds === undefined && deadlines.probationSeconds <= healthPolicy.probationSeconds) {
    deadlines.probationSeconds = Math.ceil(healthPolicy.probationSeconds) + 600;
  }
  return {
    model: r.model,
    version: r.version,
    variant: r.variant,
    target: r.target,
    strategy,
    stages,
    abWeight: r.abWeight ?? 0.5,
    abBandit: r.abBandit ?? null,
    shadowSampleRate: r.shadowSampleRate ?? 1,
    rate: r.rate ?? null,
    abort: AbortSchema.parse(r.abort ?? {}),
    deadlines,
    maintenanceWindow: r.maintenanceWindow ?? null,
    healthPolicy,
    sequenceDrainSeconds: r.sequenceDrainSeconds ?? null,
  };
}

/** Devices matching the selector: every given criterion must hold (ids AND tags AND profiles). */
export function matchesSelector(
  device: { id: string; tags: Record<string, string>; profile: string | null },
  target: RolloutDefinition["target"],
): boolean {
  if (target.deviceIds && !target.deviceIds.includes(device.id)) return false;
  if (target.profiles && (device.profile === null || !target.profiles.includes(device.profile))) return false;
  return Object.entries(target.tags ?? {}).every(([k, v]) => device.tags[k] === v);
}

/** The strategy a device's assignment carries in a serving mode (shadow / A-B / active). Pure. */
export function assignmentStrategy(d: RolloutDefinition, mode: "active" | "shadow" | "ab") {
  if (mode === "shadow") return { mode: "shadow" as const, sampleRate: d.shadowSampleRate };
  if (mode === "ab") {
    // Bandit A/B (issue 22): the device moves the split by the feedback reward, from abWeight.
    const bandit = d.abBandit ? { bandit: { minShare: d.abBandit.minSharePercent / 100 } } : {};
    return { mode: "ab" as const, weight: d.abWeight, ...bandit };
  }
  return { mode: "active" as const };
}
