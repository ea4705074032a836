import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import { type DeviceProfile, DeviceProfileSchema } from "../../shared/schemas/device-profile.js";
import { type DeviceFacts, detectProfile } from "./detect-profile.js";
import { readDeviceFacts } from "./device-facts.js";

/** The generated JSON Schema lives next to the profiles and is not a profile itself. */
const SCHEMA_FILE = "schema.json";

/** Parses one profile file; any problem is VALIDATION_FAILED naming the file. */
export async function loadProfileFile(file: string): Promise<DeviceProfile> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new EdgeFleetError("VALIDATION_FAILED", `device profile ${file}: ${(err as Error).message}`, undefined, {
      cause: err,
    });
  }
  const parsed = DeviceProfileSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new EdgeFleetError("VALIDATION_FAILED", `device profile ${file}: ${issues.join("; ")}`, { issues });
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
  return profiles.sort((a, b) => a.id.localeCompare(b.id));
}

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

/** The configured profile when there is one, else the detected one (DESIGN §5). */
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
