import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import type { AgentStore } from "../store/agent-store.js";
import { estimateHostMB, HOST_OVERHEAD_MB } from "../trust/verify-desired.js";

export interface InstalledEstimate {
  model: string;
  estimateMB: number;
}

/**
 * Whether one more model fits beside the ones the device already runs (issue 8: "multiple models
 * side by side, within the profile's memory budget and max loaded models"). Pure. A new version of a
 * model already installed replaces it, so that model's current estimate is not counted. Throws
 * INCOMPATIBLE with `details.check` = `maxLoadedModels` or `memory`, before anything is downloaded.
 */
export function checkCapacity(
  model: string,
  estimateMB: number,
  installed: readonly InstalledEstimate[],
  limits: { memoryBudgetMB: number; maxLoadedModels: number },
): void {
  const others = installed.filter((i) => i.model !== model);
  if (others.length + 1 > limits.maxLoadedModels) {
    throw new EdgeFleetError(
      "INCOMPATIBLE",
      `${model}: the device already runs ${others.length} model(s) (${others.map((o) => o.model).join(", ")}); profile allows ${limits.maxLoadedModels}`,
      {
        details: {
          check: "maxLoadedModels",
          running: others.map((o) => o.model),
          maxLoadedModels: limits.maxLoadedModels,
        },
      },
    );
  }
  const total = others.reduce((sum, o) => sum + o.estimateMB, estimateMB);
  if (total > limits.memoryBudgetMB) {
    throw new EdgeFleetError(
      "INCOMPATIBLE",
      `${model}: about ${estimateMB} MB beside ${total - estimateMB} MB already in use exceeds the profile budget of ${limits.memoryBudgetMB} MB`,
      { details: { check: "memory", estimateMB, inUseMB: total - estimateMB, memoryBudgetMB: limits.memoryBudgetMB } },
    );
  }
}

/** Estimates for the committed models on disk (their verified manifests). A manifest that cannot be read counts as overhead only. */
export async function installedEstimates(store: AgentStore, modelsDir: string): Promise<InstalledEstimate[]> {
  const out: InstalledEstimate[] = [];
  for (const rec of store.models()) {
    if (!rec.committed) continue;
    let estimateMB = HOST_OVERHEAD_MB;
    try {
      const env = JSON.parse(await readFile(join(modelsDir, rec.model, rec.committed.sha256, "manifest.json"), "utf8"));
      estimateMB = estimateHostMB(ManifestSchema.parse((env as { signed: unknown }).signed));
    } catch {
      // Keep the overhead-only estimate: the model still occupies a host slot.
    }
    out.push({ model: rec.model, estimateMB });
  }
  return out;
}
