import type { Assignment, DesiredState, HealthPolicy, SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { SignedManifest } from "../../shared/schemas/manifest.js";
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

export function signDesiredState(doc: DesiredState, director: KeyPair): SignedDesiredState {
  return signEnvelope(doc, [director]);
}
