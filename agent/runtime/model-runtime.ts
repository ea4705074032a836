import type { ErrorJson } from "../../shared/errors.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { JsonTensor, SamplesFile } from "../../shared/schemas/tensor.js";

/**
 * Contract between the updater (agent/updater/) and the runtime (agent/runtime/).
 * The updater decides *what* should run; the runtime owns model host processes and the
 * routing of requests to them. All methods are async and never block the main thread on
 * inference (each version runs in its own host process, DESIGN §5).
 */
export interface InstalledModel {
  model: string;
  version: string;
  variant: string;
  sha256: string;
  releaseCounter: number;
  /** Directory holding the extracted, verified bundle (model.onnx, samples.json, manifest.json). */
  dir: string;
  manifest: Manifest;
}

export interface LoadedVersion {
  readonly installed: InstalledModel;
  /** Resident set size of the host process in bytes, when known. */
  rss(): Promise<number | null>;
}

export interface SmokeResult {
  ok: boolean;
  /** One entry per sample; `error` set when the sample failed. */
  samples: { name: string; ok: boolean; maxAbsError: number; error?: ErrorJson }[];
}

export interface InferRequest {
  model: string;
  /** Optional explicit version; default is the version currently serving. */
  version?: string;
  inputs: Record<string, JsonTensor>;
  /** Names of outputs to return; all when omitted. */
  outputs?: string[];
}

export interface InferResult {
  model: string;
  version: string;
  outputs: Record<string, JsonTensor>;
}

export interface ModelRuntime {
  /** Spawns a host for this version, creates the session with the profile's options, warms it. */
  load(installed: InstalledModel): Promise<LoadedVersion>;
  /** Runs the bundle's golden samples against a loaded (not yet serving) version. */
  smokeTest(loaded: LoadedVersion, samples: SamplesFile): Promise<SmokeResult>;
  /**
   * Atomically makes `loaded` the serving version of its model. New requests go to it at once;
   * requests in flight on the previous version finish there; then the previous host is stopped.
   */
  activate(loaded: LoadedVersion): Promise<void>;
  /** Stops a loaded version's host (no-op if already stopped). */
  unload(loaded: LoadedVersion): Promise<void>;
  /** The version serving each model right now. */
  serving(): Map<string, LoadedVersion>;
  infer(req: InferRequest): Promise<InferResult>;
  /** Stops every host. */
  close(): Promise<void>;
  readonly profile: DeviceProfile;
}
