import {
  CreateRolloutRequestSchema,
  normalizeDefinition,
  type RolloutDefinition,
} from "../../../fleet-server/rollout/definition.js";
import type { Observation } from "../../../fleet-server/rollout/observe.js";
import type {
  EngineState,
  PlannerDevice,
  PlannerMember,
  PlannerRollout,
  RolloutStatus,
} from "../../../fleet-server/rollout/planner.js";
import type { HealthSummary, ProbationReport } from "../../../shared/schemas/device-state.js";

export const T0 = Date.parse("2025-03-03T00:00:00Z");
export const SEC = 1000;

export function definition(over: Record<string, unknown> = {}): RolloutDefinition {
  return normalizeDefinition(
    CreateRolloutRequestSchema.parse({ model: "m", version: "2.0.0", target: { tags: { site: "lab" } }, ...over }),
  );
}

export function rollout(
  def: RolloutDefinition,
  state: Partial<EngineState> = {},
  status: RolloutStatus = "running",
): PlannerRollout {
  return {
    id: "r-test",
    status,
    definition: def,
    state: {
      stage: 0,
      stageStartedAt: T0,
      soakStartedAt: null,
      servingMode: "active",
      reason: null,
      accuracy: null,
      ...state,
    },
  };
}

export function obs(state: Observation["state"], extra: Partial<Observation> = {}): Observation {
  const display =
    state === "committed" || state === "probation" || state === "downloading"
      ? state
      : state === "failed"
        ? "failed"
        : state === "reverted"
          ? "reverted"
          : state === "pending"
            ? "pending"
            : "installing";
  return { state, display, probation: null, ...extra };
}

export function member(over: Partial<PlannerMember> = {}): PlannerMember {
  return { stage: 0, assignedAt: T0, phase: "download", phaseSince: T0, outcome: null, acknowledged: false, ...over };
}

export function device(
  id: string,
  opts: { member?: PlannerMember; observation?: Observation; matches?: boolean; heldBy?: string } = {},
): PlannerDevice {
  return {
    deviceId: id,
    matches: opts.matches ?? true,
    heldBy: opts.heldBy ?? null,
    member: opts.member ?? null,
    observation: opts.member ? (opts.observation ?? obs("pending")) : null,
  };
}

/** `n` matching, unassigned devices d00..d(n-1). */
export function fleet(n: number): PlannerDevice[] {
  return Array.from({ length: n }, (_, i) => device(`d${String(i).padStart(2, "0")}`));
}

function summary(requests: number, p95Ms: number, errors = 0, shadow: number | null = null): HealthSummary {
  return {
    version: "2.0.0",
    sha256: "c".repeat(64),
    requests,
    errors,
    nonFinite: 0,
    p50Ms: p95Ms / 2,
    p95Ms,
    hostRestarts: 0,
    rssBytes: null,
    shadowAgreementPercent: shadow,
  };
}

export function probation(
  verdict: ProbationReport["verdict"],
  candidate: { requests: number; p95Ms: number; errors?: number; shadow?: number },
  baseline: { requests: number; p95Ms: number } | null,
): ProbationReport {
  return {
    verdict,
    startedAt: new Date(T0).toISOString(),
    candidate: summary(candidate.requests, candidate.p95Ms, candidate.errors ?? 0, candidate.shadow ?? null),
    baseline: baseline ? summary(baseline.requests, baseline.p95Ms) : null,
  };
}
