import type { Clock } from "../../shared/clock.js";
import type { ErrorJson } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { CostFigures, DeviceEvent, FeedbackFigures, ReportedState } from "../../shared/schemas/device-state.js";
import type { Root } from "../../shared/schemas/trust.js";
import type { InstalledModel, ModelRuntime } from "../runtime/model-runtime.js";
import type { LockManager } from "../serving/update-locks.js";
import type { AgentStore } from "../store/agent-store.js";
import type { StorageMonitor } from "../store/storage-monitor.js";
import type { BackoffOptions } from "../transport/backoff.js";
import type { ChunkChannel } from "../transport/chunk-channel.js";
import type { DeviceFacts } from "../trust/verify-desired.js";
import type { MonitorDeps } from "./probation-monitor.js";
import type { SideServing } from "./side-candidates.js";
import type { PipelineStep } from "./verdicts.js";

/** What the updater (updater.ts) needs and what it offers: its contract with the composition root. */
export interface UpdaterDeps {
  log: Logger;
  clock: Clock;
  store: AgentStore;
  runtime: ModelRuntime;
  channel: ChunkChannel;
  publish: { event(e: DeviceEvent): void; reported(r: ReportedState): void };
  root: () => Root;
  dirs: { downloads: string; models: string; staging: string };
  identity: { deviceId: string; agentVersion: string; profile: string; arch: string };
  facts: DeviceFacts;
  download?: { chunkSize?: number; window?: number; timeoutMs?: number; maxTries?: number };
  /** The profile's limits: memory budget (probation verdict, blue-green) and how many hosts may run. */
  limits: { memoryBudgetMB: number; maxLoadedModels: number };
  /** Probation monitor cadence (tests shorten it). */
  monitor?: Pick<MonitorDeps, "tickMs" | "probeIdleMs">;
  /**
   * Fault injection for crash-safety tests only: pause this long before entering a step (of the active
   * pipeline, a repair or a side candidate), so a test can SIGKILL the agent, or change its files, at a
   * known step. Never set in production (see docs/operations.md).
   */
  pauseBeforeStep?: Partial<Record<PipelineStep, number>>;
  /** Fault injection likewise (`EDGEFLEET_FAULT_PAUSE_IN_DELTA`): pause with a delta's files staged, before the rename. */
  pauseInDelta?: number;
  /** Apps' update locks (issue 8): the swap step waits for them up to the policy's lock deadline. */
  locks?: Pick<LockManager, "waitForSwap">;
  /** The serving layer (issue 8): side candidates (shadow / A-B) and per-model serving options. */
  serving?: SideServing;
  /** The agent's storage faults (issue 20 §2): shown in `reported.storage`; recoveries retry updates. */
  storage?: Pick<StorageMonitor, "report" | "snapshot" | "onRecovered">;
  /** Retry cadence after a storage fault failed an update (full jitter; tests shorten it). */
  storageBackoff?: BackoffOptions;
  random?: () => number;
  /** Ground-truth feedback counts per model (issue 22), shown in `reported` for the accuracy gate. */
  feedback?: () => ReadonlyMap<string, FeedbackFigures[]>;
  /** Cost figures per model and version (issue 22, agent/cost/cost-meter.ts), shown in `reported`. */
  cost?: () => ReadonlyMap<string, CostFigures[]>;
}

export interface Updater {
  /** Serves committed models from disk and resumes interrupted updates; needs no network. */
  start(): Promise<void>;
  /** An inbound `desired` payload (already JSON-parsed); verified, persisted, reconciled. */
  onDesired(payload: unknown): void;
  /** A `desired` payload that could not even be read (too large, not JSON): reported, nothing else. */
  onUnreadableDesired(error: ErrorJson): void;
  /** Runtime signal: a host exited unasked (crash, OOM kill). */
  hostExited(installed: InstalledModel): void;
  reported(): ReportedState;
  publishReported(): void;
  /** Resolves when no update work is queued (tests, shutdown). */
  idle(): Promise<void>;
  close(): Promise<void>;
}
