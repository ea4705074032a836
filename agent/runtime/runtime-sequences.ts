import type { RawTensor } from "../../shared/tensors.js";
import type { SequenceStep } from "./host-sequences.js";
import type { LoadedVersion } from "./model-runtime.js";
import type { AgentModelRuntime, Version } from "./runtime-types.js";

interface Runtime {
  own(loaded: LoadedVersion): Version;
  versions: ReadonlySet<Version>;
  /** runtime.ts `runRawOn`: validation, inFlight, records (telemetry, probation) — the same as any request. */
  runRaw(
    v: Version,
    feeds: Record<string, RawTensor>,
    outputs: string[] | undefined,
    probe: boolean,
    seq: SequenceStep,
  ): Promise<{ outputs: Record<string, RawTensor> }>;
}

/**
 * The runtime's part of sequences (issue 18; the bookkeeping is sequence-store.ts): a frame runs on
 * the version it is bound to, retiring or not, and a live sequence holds its version's host up
 * (`holds`, which `drainAndStop` waits for up to `sequenceDrainMs`).
 */
export function sequenceMethods(
  rt: Runtime,
): Pick<AgentModelRuntime, "runSequenceStep" | "dropSequences" | "holdForSequences" | "moveSequences"> {
  return {
    async runSequenceStep(loaded, req) {
      const v = rt.own(loaded);
      const { outputs } = await rt.runRaw(v, req.inputs, req.outputs, false, req.step);
      return { model: v.installed.model, version: v.installed.version, sha256: v.installed.sha256, outputs };
    },

    async dropSequences(loaded, ids) {
      const v = loaded as Version;
      if (rt.versions.has(v) && v.host.alive()) await v.host.dropSequences(ids);
    },

    async moveSequences(from, to, ids) {
      const a = rt.own(from);
      const b = rt.own(to);
      const states = await a.host.exportSequences(ids);
      await b.host.importSequences(states);
      await a.host.dropSequences(ids);
      return Object.keys(states);
    },

    holdForSequences(loaded) {
      const v = rt.own(loaded);
      v.holds++;
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        v.holds = Math.max(0, v.holds - 1);
        if (v.inFlight === 0 && v.holds === 0) v.onIdle?.();
      };
    },
  };
}
