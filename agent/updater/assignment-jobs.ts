import type { DesiredState } from "../../shared/schemas/desired-state.js";
import { DesiredStateSchema } from "../../shared/schemas/desired-state.js";
import type { InstalledRef } from "../../shared/schemas/device-state.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import type { AgentStore } from "../store/agent-store.js";
import type { Job } from "./pipeline-steps.js";

/** Raw manifests are keyed by (model, sha256): one model may carry an active and a side assignment. */
export const manifestKey = (model: string, sha256: string) => `${model}@${sha256}`;

export interface AcceptedDesired {
  desired: DesiredState;
  /** Per (model, sha256) — see `manifestKey` — the assignment's raw (signed) manifest. */
  rawManifests: Map<string, Envelope<unknown>>;
}

/** The accepted desired state and the pipeline job of one of its assignments, from the store. */
export function createJobSource(store: Pick<AgentStore, "lastDesired" | "model">) {
  const accepted = (): AcceptedDesired | null => {
    const last = store.lastDesired();
    if (!last) return null;
    const raw = last.document as Envelope<{
      assignments: { model: string; bundle: { sha256: string }; manifest: Envelope<unknown> }[];
    }>;
    const desired = DesiredStateSchema.parse(raw.signed);
    const rawManifests = new Map(
      raw.signed.assignments.map((a) => [manifestKey(a.model, a.bundle.sha256), a.manifest]),
    );
    return { desired, rawManifests };
  };

  const jobFor = (model: string, sha256: string): Job | null => {
    const acc = accepted();
    const a = acc?.desired.assignments.find((x) => x.model === model && x.bundle.sha256 === sha256);
    const rawManifest = acc?.rawManifests.get(manifestKey(model, sha256));
    if (!acc || !a || !rawManifest) return null;
    const manifest = ManifestSchema.parse(rawManifest.signed);
    const ref: InstalledRef = {
      version: manifest.model.version,
      variant: manifest.model.variant,
      sha256,
      releaseCounter: a.releaseCounter,
    };
    return {
      model,
      ref,
      size: a.bundle.size,
      delta: a.delta ?? null,
      manifest,
      rawManifest,
      policy: acc.desired.healthPolicy,
      ...(a.sequenceDrainSeconds !== undefined ? { sequenceDrainMs: a.sequenceDrainSeconds * 1000 } : {}),
      rolloutId: acc.desired.rollout?.id ?? null,
      loaded: null,
      samples: null,
      previous: null,
      baseline: null,
      priorRestarts: store.model(model)?.probationRestarts ?? 0,
      report: null,
    };
  };

  return { accepted, jobFor };
}
