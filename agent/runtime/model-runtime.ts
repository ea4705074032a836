import type { ErrorCode, ErrorJson } from "../../shared/errors.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { JsonTensor, SamplesFile } from "../../shared/schemas/tensor.js";
import type { RunTiming } from "./host-protocol.js";

/**
 * Contract between the updater (agent/updater/) and the runtime (agent/runtime/).
 * The updater decides *what* should run; the runtime owns model host processes and the
 * routing of requests to them. All methods are async and never block the main thread on
 * inference (each version runs in its own host process, architecture.md §5).
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
  /** Loaded as background work (LoadOptions.background): a shadow candidate's host. */
  readonly background: boolean;
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

/**
 * One inference as the runtime saw it, for the health monitor (probation verdicts, baselines).
 * Emitted for every request that reached a host. Requests refused by validation never reach one and
 * are not recorded; a run onnxruntime refused as the caller's mistake is recorded with a 4xx
 * `errorCode` (INVALID_TENSOR), which metrics count and probation ignores (issue 20 §3, `isModelFault`).
 */
export interface InferRecord {
  installed: InstalledModel;
  /** Epoch ms when the reply (or failure) came back. */
  at: number;
  /** Time inside `session.run` in the host: the model's own latency, independent of queueing. Null on failure. */
  computeMs: number | null;
  /**
   * CPU of the host process attributed to this run (ms, onnxruntime's threads included; host-protocol.ts):
   * what cost per prediction sums (issue 22). Null on failure (its CPU rolls into the next run's).
   */
  cpuMs?: number | null;
  /** Routing to reply, including IPC and waiting behind other requests on the same host. */
  totalMs: number;
  ok: boolean;
  errorCode?: ErrorCode;
  /** NaN/Inf elements in the outputs (0 when the run failed). */
  nonFinite: number;
  /** A synthetic probe from the bundle's samples rather than a client request. */
  probe: boolean;
  /**
   * Monotonic timestamps of the run's stages (host-protocol.ts `RunTiming`); absent on failure.
   * The benchmarks' per-stage breakdown reads these (issue 13).
   */
  stages?: RunTiming;
}

export interface ActivateOptions {
  /**
   * Keep the previous serving version's host running as a warm standby (blue-green) instead of
   * stopping it after its in-flight requests drain. It no longer receives default-routed requests.
   */
  keepPrevious?: boolean;
  /**
   * How long sequences live on the replaced version may go on there before its host stops (issue 18:
   * the rollout's `sequenceDrainSeconds`); absent: the runtime's `sequenceDrainMs`.
   */
  sequenceDrainMs?: number;
}

export interface LoadOptions {
  /**
   * Background work only (a shadow candidate): the session's thread pools never spin-wait after a run.
   * ORT's default spinning keeps a worker busy for the whole gap between runs (measured: 1.18 ms of CPU per
   * 0.02 ms sample on a 2-core VM), CPU the callers' requests need; see docs/benchmarks.md (shadow).
   */
  background?: boolean;
}

export interface ModelRuntime {
  /** Spawns a host for this version, creates the session with the profile's options, warms it. */
  load(installed: InstalledModel, opts?: LoadOptions): Promise<LoadedVersion>;
  /** Runs the bundle's golden samples against a loaded (not yet serving) version. */
  smokeTest(loaded: LoadedVersion, samples: SamplesFile): Promise<SmokeResult>;
  /**
   * Atomically makes `loaded` the serving version of its model. New requests go to it at once;
   * requests in flight on the previous version finish there; then the previous host is stopped.
   */
  activate(loaded: LoadedVersion, opts?: ActivateOptions): Promise<void>;
  /** Stops a loaded version's host (no-op if already stopped). */
  unload(loaded: LoadedVersion): Promise<void>;
  /** The version serving each model right now. */
  serving(): Map<string, LoadedVersion>;
  infer(req: InferRequest): Promise<InferResult>;
  /**
   * Runs a synthetic probe on this exact version (recorded with `probe: true`); `computeMs` is the
   * model's execution time in its host (paired latency calibration, issue 20 §6).
   */
  probe(loaded: LoadedVersion, inputs: Record<string, JsonTensor>): Promise<InferResult & { computeMs: number }>;
  /** Subscribes to every inference record; returns the unsubscribe function. */
  observe(listener: (r: InferRecord) => void): () => void;
  /** How many times this version's host crashed and was restarted (or is being restarted). */
  restarts(loaded: LoadedVersion): number;
  /** Whether the version still has a host (running, or crashed and being restarted); false once stopped. */
  isLoaded(loaded: LoadedVersion): boolean;
  /** Every version with a host, all models, in load order. */
  loaded(): LoadedVersion[];
  /** Stops every host. */
  close(): Promise<void>;
  readonly profile: DeviceProfile;
}
