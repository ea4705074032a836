import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { compareIds } from "../compare-ids.js";
import { EdgeFleetError } from "../errors.js";
import { type DeviceProfile, DeviceProfileSchema } from "../schemas/device-profile.js";

/**
 * Device profile files (architecture.md §5), read by both sides: the agent tunes its sessions from its own
 * profile, the fleet server picks each device's bundle variant from its profile (issue 5). Pure
 * file parsing only; detecting which profile fits this machine stays in the agent.
 */

/** The generated JSON Schema lives next to the profiles and is not a profile itself. */
const SCHEMA_FILE = "schema.json";

/** Parses one profile file; any problem is VALIDATION_FAILED naming the file. */
export async function loadProfileFile(file: string): Promise<DeviceProfile> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new EdgeFleetError("VALIDATION_FAILED", `device profile ${file}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = DeviceProfileSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new EdgeFleetError("VALIDATION_FAILED", `device profile ${file}: ${issues.join("; ")}`, {
      details: { issues },
    });
  }
  return parsed.data;
}

/** Loads every `*.json` profile in `dir` (except schema.json), sorted by id; duplicate ids are rejected. */
export async function loadProfiles(dir: string): Promise<DeviceProfile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".json") && n !== SCHEMA_FILE).sort();
  const profiles: DeviceProfile[] = [];
  const seen = new Map<string, string>();
  for (const name of names) {
    const file = path.join(dir, name);
    const profile = await loadProfileFile(file);
    const other = seen.get(profile.id);
    if (other)
      throw new EdgeFleetError(
        "VALIDATION_FAILED",
        `device profile ${file}: id ${profile.id} already used by ${other}`,
      );
    seen.set(profile.id, file);
    profiles.push(profile);
  }
  return profiles.sort((a, b) => compareIds(a.id, b.id));
}
