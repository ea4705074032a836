import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceProfile } from "../../shared/schemas/device-profile.js";
import type { RawTensor } from "../../shared/tensors.js";
import type { HostPlacement } from "./host-placement.js";
import type { SequenceStep } from "./host-sequences.js";
import type { HostExit, ModelHost, ModelHostDeps, SpawnOptions } from "./model-host.js";
import type { InstalledModel, LoadedVersion, ModelRuntime } from "./model-runtime.js";

/** Types of the agent's model runtime (`runtime.ts`), kept apart so the implementation stays readable. */
export interface ModelRuntimeDeps {
  log: Logger;
  clock: Clock;
  profile: DeviceProfile;
  /** Host process options (entry, execArgv, load/stop timeouts). */
  host?: Omit<ModelHostDeps, "log" | "clock">;
  /** How long `activate`/`unload` wait for in-flight requests before stopping a host anyway (default 30 s). */
  drainTimeoutMs?: number;
  /** Called when a host exits without being asked to (crash, OOM kill); the health monitor counts these. */
  onHostExit?: (installed: InstalledModel, exit: HostExit) => void;
  /** How long a request routed to a crashed version waits for its restarted host (default 15 s). */
  restartWaitMs?: number;
  /**
   * How long a replaced version's host stays up for its live sequences to end (issue 18; default 60 s,
   * never less than `drainTimeoutMs`); then it stops and they are lost.
   */
  sequenceDrainMs?: number;
}

export type VersionState = "loaded" | "serving" | "retiring" | "stopped" | "crashed";

/** What the runtime adds to the `ModelRuntime` contract, for the socket API, status and metrics. */
export interface AgentModelRuntime extends ModelRuntime {
  stateOf(loaded: LoadedVersion): VersionState;
  /** Requests currently running on this version's host. */
  inFlight(loaded: LoadedVersion): number;
  /**
   * OS scheduling priority (nice) of a version's host, kept across host restarts (benchmarks; the
   * agent places shadow hosts with LoadOptions.background). False when the OS refuses (raising needs
   * privileges).
   */
  setPriority(loaded: LoadedVersion, nice: number): Promise<boolean>;
  /** OS pid of the version's host process. */
  hostPid(loaded: LoadedVersion): number;
  /** Low-power parking (idle-unload.ts): whether the host is stopped until the next request, and reloads so far. */
  idleState(loaded: LoadedVersion): { parked: boolean; reloads: number; lastReloadMs: number | null };
  /** `infer` on typed arrays (binary extension, batching, jobs); same routing, records and validation. */
  inferRaw(req: RawInferRequest): Promise<RawInferResult>;
  /**
   * One frame of a sequence on `loaded` (even retiring: a sequence finishes where it started), state
   * kept by its host (issue 18, sequence-store.ts). Recorded like any request (telemetry, probation).
   */
  runSequenceStep(
    loaded: LoadedVersion,
    req: { inputs: Record<string, RawTensor>; outputs?: string[]; step: SequenceStep },
  ): Promise<RawInferResult>;
  /** Forgets sequences' state in `loaded`'s host (expiry); nothing when the host is gone. */
  dropSequences(loaded: LoadedVersion, ids: string[]): Promise<void>;
  /** Moves sequences' state from one version's host to another's (a state-compatible swap). */
  moveSequences(from: LoadedVersion, to: LoadedVersion, ids: string[]): Promise<string[]>;
  /** Keeps `loaded`'s host up while a sequence lives on it (up to `sequenceDrainMs` once retiring); returns the release. */
  holdForSequences(loaded: LoadedVersion): () => void;
}

export interface RawInferRequest {
  model: string;
  version?: string;
  inputs: Record<string, RawTensor>;
  outputs?: string[];
  /** Work the agent does on its own behalf (shadow comparisons): recorded like probes, not as client requests. */
  internal?: boolean;
}

export interface RawInferResult {
  model: string;
  version: string;
  /** Bundle hash of the version that ran (response-cache keys, shadow reports). */
  sha256: string;
  outputs: Record<string, RawTensor>;
}

/**
 * One loaded model version and its host. `inFlight` counts requests between routing and reply.
 * `onIdle` is called by whichever request brings `inFlight` to 0 while the version is retiring.
 */
export interface Version extends LoadedVersion {
  /** Replaced by a restart after a crash; requests always use the current one. */
  host: ModelHost;
  readonly spawn: SpawnOptions;
  state: VersionState;
  /** Crashes restarted (or being restarted) so far, and when they happened (for the backoff). */
  restarts: number;
  crashTimes: number[];
  /** Set while a crashed host is being restarted; resolves when a new host runs or the version retires. */
  restarting: Promise<void> | null;
  /** Cuts the restart backoff short when the version retires. */
  cancelBackoff: (() => void) | null;
  inFlight: number;
  /** Live sequences on this version (holdForSequences): a retiring version waits for them too. */
  holds: number;
  /** Set when replaced by a rollout that gives its own sequence drain deadline; else the runtime's. */
  sequenceDrainMs?: number;
  onIdle: (() => void) | null;
  /** Priority and CPUs to (re)apply to every host of this version (host-placement.ts); undefined = inherited. */
  placement?: HostPlacement;
  /** Set by the first `retire`, so concurrent unload/activate/close share one drain. */
  retiring: Promise<void> | null;
}
