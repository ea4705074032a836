import type { Variant } from "../../shared/schemas/common.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { DeviceRow } from "../store/device-repo.js";
import type { BundleRow, ModelRepo } from "../store/model-repo.js";
import type { RolloutRow } from "../store/rollout-repo.js";
import type { VariantMeasurementRepo } from "../store/variant-measurement-repo.js";
import { candidatesOf, chooseVariant, type VariantChoiceReason, whyNotPreferred } from "./choose-variant.js";
import { AUTO_VARIANT } from "./definition.js";

export interface VariantAssignmentDeps {
  models: ModelRepo;
  measurements: VariantMeasurementRepo;
  /** The server's device profiles (`profilesDir`), loaded at start. */
  profiles: readonly DeviceProfile[];
}

export interface MemberBundle {
  bundle: BundleRow;
  variant: string;
  reason: VariantChoiceReason | "explicit";
}

/**
 * The I/O around `chooseVariant`: which bundle of the rollout's version a device gets. A rollout
 * with an explicit variant gives every device that one; `auto` asks the device's profile (the one
 * it was enrolled with, else the one its agent reports) and what it measured before.
 */
export function createVariantAssignment(deps: VariantAssignmentDeps) {
  const { models, measurements, profiles } = deps;

  function profileOf(device: Pick<DeviceRow, "profile" | "reported">): DeviceProfile | null {
    const id = device.profile ?? device.reported?.profile ?? null;
    return profiles.find((p) => p.id === id) ?? null;
  }

  return {
    profileOf,
    /** Throws when a bundle the rollout was created with has vanished from the registry. */
    pick(row: RolloutRow, device: Pick<DeviceRow, "id" | "profile" | "reported">): MemberBundle {
      const fallback = models.bundle(row.bundleSha256);
      if (!fallback) throw new Error(`bundle ${row.bundleSha256} vanished`);
      if (row.variant !== AUTO_VARIANT) return { bundle: fallback, variant: fallback.variant, reason: "explicit" };
      const bundles = models.bundlesOf(row.model, row.version);
      const measured = measurements
        .forDevice(device.id, row.model)
        .map((m) => ({ variant: m.variant as Variant, p50Ms: m.p50Ms, requests: m.requests }));
      const choice = chooseVariant(candidatesOf(bundles), profileOf(device), measured);
      const bundle = bundles.find((b) => b.variant === choice.variant) ?? fallback;
      return { bundle, variant: bundle.variant, reason: choice.reason };
    },
    /** Why a member of an `auto` rollout did not get its profile's preferred variant (null: it did, or explicit). */
    explain(
      row: RolloutRow,
      device: Pick<DeviceRow, "profile" | "reported"> | null | undefined,
      variant: string,
    ): string | null {
      if (row.variant !== AUTO_VARIANT || !device) return null;
      const bundles = models.bundlesOf(row.model, row.version);
      return whyNotPreferred(candidatesOf(bundles), profileOf(device), variant as Variant);
    },
  };
}
export type VariantAssignment = ReturnType<typeof createVariantAssignment>;
