import type { DeviceProfile } from "../../shared/schemas/device-profile.js";

/**
 * The subset of onnxruntime-node's `InferenceSession.SessionOptions` we set. Declared here (not imported from
 * onnxruntime-common) so the main process never loads onnxruntime: only model hosts do.
 * It crosses the IPC channel to the host as plain data.
 */
export interface HostSessionOptions {
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  executionMode: "sequential" | "parallel";
  graphOptimizationLevel: "disabled" | "basic" | "extended" | "all";
  enableCpuMemArena: boolean;
  enableMemPattern: boolean;
  executionProviders: string[];
  /** ORT session config entries, flat keys (`session.intra_op.allow_spinning`), string values (ORT 1.30 rejects others). */
  extra: Record<string, string>;
}

/**
 * Profile → session options. Thread counts of 0 mean "ORT decides", which onnxruntime-node expresses by
 * leaving the option out (passing 0 works too, but omitting keeps ORT's own default logic obvious).
 * Pure; unit-tested.
 */
export function sessionOptionsFromProfile(profile: DeviceProfile): HostSessionOptions {
  const s = profile.session;
  const opts: HostSessionOptions = {
    executionMode: s.executionMode,
    graphOptimizationLevel: s.graphOptimizationLevel,
    enableCpuMemArena: s.enableCpuMemArena,
    enableMemPattern: s.enableMemPattern,
    executionProviders: s.executionProviders.length > 0 ? [...s.executionProviders] : ["cpu"],
    extra: { ...s.extra },
  };
  if (s.intraOpNumThreads > 0) opts.intraOpNumThreads = s.intraOpNumThreads;
  if (s.interOpNumThreads > 0) opts.interOpNumThreads = s.interOpNumThreads;
  return opts;
}
