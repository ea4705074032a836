import path from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import { loadProfileFile, loadProfiles } from "../../shared/profiles/load-profiles.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import { type DeviceFacts, detectProfile } from "./detect-profile.js";
import { readDeviceFacts } from "./device-facts.js";

// Profile file parsing moved to shared/ so the fleet server reads the same files (issue 5);
// re-exported here so agent imports keep working.
export { loadProfileFile, loadProfiles };

export interface ResolveProfileOptions {
  /** A profile id from `dir`, or a path to a profile file (contains "/" or ends in .json). */
  override?: string;
  dir: string;
  /** Injected for tests; defaults to reading the real machine. */
  facts?: DeviceFacts;
}

export interface ResolvedProfile {
  profile: DeviceProfile;
  source: "override-file" | "override-id" | "detected";
  facts?: DeviceFacts;
}

/** The configured profile when there is one, else the detected one (architecture.md §5). */
export async function resolveProfile(opts: ResolveProfileOptions): Promise<ResolvedProfile> {
  const override = opts.override;
  if (override && (override.includes("/") || override.endsWith(".json"))) {
    return { profile: await loadProfileFile(path.resolve(override)), source: "override-file" };
  }
  const profiles = await loadProfiles(opts.dir);
  if (override) {
    const profile = profiles.find((p) => p.id === override);
    if (!profile) {
      throw new EdgeFleetError(
        "NOT_FOUND",
        `device profile ${override} not found in ${opts.dir} (known: ${profiles.map((p) => p.id).join(", ")})`,
      );
    }
    return { profile, source: "override-id" };
  }
  const facts = opts.facts ?? (await readDeviceFacts());
  const profile = detectProfile(facts, profiles);
  if (!profile) {
    throw new EdgeFleetError(
      "NOT_FOUND",
      `no device profile in ${opts.dir} matches arch=${facts.arch} cores=${facts.cores} memoryMB=${facts.memoryMB}` +
        (facts.deviceTreeModel ? ` model="${facts.deviceTreeModel}"` : "") +
        "; configure one explicitly",
    );
  }
  return { profile, source: "detected", facts };
}
