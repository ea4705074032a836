import type { Assignment, SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { PreviousRef } from "../../shared/schemas/rollout-state.js";
import type { DeviceRow } from "../store/device-repo.js";

/** The assignments of a device's last signed desired state (none before its first). Pure. */
export function currentAssignments(desired: SignedDesiredState | null | undefined): Assignment[] {
  return desired?.signed.assignments ?? [];
}

/**
 * What a device runs for `model` before a rollout assigns it (the rollback target): its reported
 * committed version, else the active assignment of its last desired state, else nothing. Pure.
 */
export function previousOf(device: Pick<DeviceRow, "reported" | "desired">, model: string): PreviousRef | null {
  const committed = device.reported?.models.find((m) => m.model === model)?.committed;
  if (committed) return { ...committed };
  const a = currentAssignments(device.desired).find((x) => x.model === model && x.strategy.mode === "active");
  if (!a) return null;
  const m = a.manifest.signed;
  return {
    sha256: a.bundle.sha256,
    version: m.model.version,
    variant: m.model.variant,
    releaseCounter: a.releaseCounter,
  };
}
