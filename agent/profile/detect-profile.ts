import { compareIds } from "../../shared/compare-ids.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";

/** What the agent knows about the machine it runs on (gathered by `readDeviceFacts`). */
export interface DeviceFacts {
  /** Contents of /proc/device-tree/model without the trailing NUL, when the file exists. */
  deviceTreeModel?: string;
  /** Node-style arch (`x64`, `arm64`, ...). */
  arch: string;
  cores: number;
  memoryMB: number;
}

export interface ProfileMatch {
  profile: DeviceProfile;
  /** 2 = matched by device-tree model, 1 = matched by arch/resources only. */
  specificity: number;
}

/**
 * Whether a profile applies to these facts, and how specifically.
 * A profile listing device-tree substrings matches on any of them (arch must still agree when listed);
 * a profile without device-tree substrings matches on arch alone. `minCores` / `minMemoryMB` always apply.
 */
export function matchProfile(facts: DeviceFacts, profile: DeviceProfile): ProfileMatch | null {
  const m = profile.match;
  if (m.arch.length > 0 && !m.arch.includes(facts.arch)) return null;
  if (m.minCores !== undefined && facts.cores < m.minCores) return null;
  if (m.minMemoryMB !== undefined && facts.memoryMB < m.minMemoryMB) return null;
  if (m.deviceTreeModel.length > 0) {
    const model = facts.deviceTreeModel;
    if (model === undefined || !m.deviceTreeModel.some((s) => model.includes(s))) return null;
    return { profile, specificity: 2 };
  }
  // A profile with no criteria at all would match everything; treat it as never auto-detected.
  if (m.arch.length === 0) return null;
  return { profile, specificity: 1 };
}

/**
 * Picks the best profile for the facts: device-tree matches beat arch-only matches; among equals
 * the lower `priority` wins; then the id (so the choice never depends on directory order).
 * Returns null when nothing matches.
 */
export function detectProfile(facts: DeviceFacts, profiles: readonly DeviceProfile[]): DeviceProfile | null {
  const matches = profiles.map((p) => matchProfile(facts, p)).filter((m): m is ProfileMatch => m !== null);
  matches.sort(
    (a, b) =>
      b.specificity - a.specificity ||
      a.profile.priority - b.profile.priority ||
      compareIds(a.profile.id, b.profile.id),
  );
  return matches[0]?.profile ?? null;
}
