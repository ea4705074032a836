import type { Assignment, DesiredState, HealthPolicy, SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { SignedManifest } from "../../shared/schemas/manifest.js";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import type { KeyPair } from "../../shared/trust/keys.js";

/**
 * Desired state lifetime. Long enough that a device offline for weeks (shipping, storage,
 * flaky links) still accepts the retained document when it comes back, short enough that a
 * captured old document cannot be replayed indefinitely (`seq` already blocks replays to a
 * device that saw a newer one; expiry covers devices that never did).
 */
export const DESIRED_TTL_MS = 30 * 24 * 3600 * 1000;

export interface NewAssignment {
  model: string;
  bundle: { sha256: string; size: number };
  releaseCounter: number;
  manifest: SignedManifest;
}

/**
 * Desired state is the device's full set of assignments: the new one replaces any assignment
 * for the same model and every other model's assignment is carried over unchanged.
 */
export function mergeAssignments(previous: readonly Assignment[], next: NewAssignment): Assignment[] {
  const kept = previous.filter((a) => a.model !== next.model);
  const added: Assignment = { ...next, strategy: { mode: "active" } };
  return [...kept, added].sort((a, b) => a.model.localeCompare(b.model));
}

/**
 * Like `mergeAssignments`, for a rollout's serving mode: `active` replaces the model's assignment;
 * `shadow` and `ab` keep the device's current active assignment and add the new bundle beside it
 * with its strategy (the agent runs both; architecture.md §3 "the strategy for each").
 */
export function assignmentsForMode(
  previous: readonly Assignment[],
  next: NewAssignment,
  mode: { mode: "active" } | { mode: "shadow"; sampleRate: number } | { mode: "ab"; weight: number },
): Assignment[] {
  if (mode.mode === "active") return mergeAssignments(previous, next);
  const kept = previous.filter((a) => a.model !== next.model);
  const active = previous.filter((a) => a.model === next.model && a.strategy.mode === "active").slice(0, 1);
  const added: Assignment = { ...next, strategy: mode };
  return [...kept, ...active, added].sort((a, b) => a.model.localeCompare(b.model));
}

/** True when `sha256` runs beside the model's active version (a shadow or A/B side assignment). */
export function hasSide(assignments: readonly Assignment[], model: string, sha256: string): boolean {
  return assignments.some((a) => isSide(a, model, sha256));
}

/** Drops that side assignment only: the active one and every other model's stay as they are (abort). */
export function withoutSide(previous: readonly Assignment[], model: string, sha256: string): Assignment[] {
  return previous.filter((a) => !isSide(a, model, sha256));
}

function isSide(a: Assignment, model: string, sha256: string): boolean {
  return a.model === model && a.strategy.mode !== "active" && a.bundle.sha256 === sha256;
}

/** Drops a model's assignments (rollback of a device that had no previous version). */
export function withoutModel(previous: readonly Assignment[], model: string): Assignment[] {
  return previous.filter((a) => a.model !== model);
}

export function buildDesiredState(input: {
  deviceId: string;
  seq: number;
  now: number;
  assignments: Assignment[];
  healthPolicy: HealthPolicy;
  rollout: { id: string; stage: number } | null;
}): DesiredState {
  return {
    _type: "desired",
    deviceId: input.deviceId,
    seq: input.seq,
    issuedAt: new Date(input.now).toISOString(),
    expires: new Date(input.now + DESIRED_TTL_MS).toISOString(),
    assignments: input.assignments,
    healthPolicy: input.healthPolicy,
    rollout: input.rollout,
  };
}

/** Signs with the director key; with a rotated root (chain longer than v1) the chain rides along. */
export function signDesiredState(
  doc: DesiredState,
  director: KeyPair,
  rootChain: readonly Envelope<Root>[] = [],
): SignedDesiredState {
  const env = signEnvelope(doc, [director]);
  return rootChain.length > 1 ? { ...env, rootChain: [...rootChain] } : env;
}
