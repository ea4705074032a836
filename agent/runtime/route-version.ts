import { EdgeFleetError } from "../../shared/errors.js";
import type { Version } from "./runtime-types.js";

/**
 * Which loaded version serves a request (pure, synchronous): the model's serving version, or an
 * explicitly named version that is loaded but not retiring. Synchronous on purpose: the runtime
 * picks and counts a request in one section with no await in between (see runtime.ts).
 */
export function routeVersion(
  versions: ReadonlySet<Version>,
  servingByModel: ReadonlyMap<string, Version>,
  model: string,
  version?: string,
): Version {
  if (version === undefined) {
    const v = servingByModel.get(model);
    if (v) return v;
    const known = [...versions].some((x) => x.installed.model === model);
    if (known) throw new EdgeFleetError("MODEL_NOT_READY", `model ${model} has no serving version`);
    throw new EdgeFleetError("NOT_FOUND", `unknown model ${model}`);
  }
  // The serving one first, in case the same version is loaded twice (reinstall).
  const serving = servingByModel.get(model);
  if (serving?.installed.version === version) return serving;
  for (const v of versions) {
    if (v.installed.model === model && v.installed.version === version && v.state === "loaded") return v;
  }
  if (![...versions].some((x) => x.installed.model === model)) {
    throw new EdgeFleetError("NOT_FOUND", `unknown model ${model}`);
  }
  throw new EdgeFleetError("NOT_FOUND", `model ${model} has no loaded version ${version}`);
}
