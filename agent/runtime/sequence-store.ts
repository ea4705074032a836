import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { RawTensor } from "../../shared/tensors.js";
import type { LoadedVersion } from "./model-runtime.js";
import type { AgentModelRuntime, RawInferRequest, RawInferResult } from "./runtime-types.js";
import {
  DEFAULT_MAX_SEQUENCES,
  DEFAULT_SEQUENCE_IDLE_MS,
  expiredSequences,
  limitsFor,
  nextExpiry,
  planStep,
  type SequenceEntry,
  type SequenceLimits,
} from "./sequence-plan.js";

export type SequenceRuntime = Pick<
  AgentModelRuntime,
  | "serving"
  | "loaded"
  | "stateOf"
  | "hostPid"
  | "runSequenceStep"
  | "dropSequences"
  | "holdForSequences"
  | "moveSequences"
>;

export interface SequenceStepRequest {
  model: string;
  /** A version named in the URL: the sequence starts there; later frames must name the same one or none. */
  version?: string;
  id: string;
  start: boolean;
  end: boolean;
  inputs: Record<string, RawTensor>;
  outputs?: string[];
}

export interface SequenceStore {
  step(req: SequenceStepRequest): Promise<RawInferResult>;
  /** Ends a sequence without a frame (a stream whose app closed it), after its queued frames. */
  end(model: string, id: string): Promise<void>;
  /** Live sequences of `model` (all models when omitted). */
  live(model?: string): number;
  /** Drops every sequence (agent shutdown); their hosts are stopping anyway. */
  close(): void;
}

export interface SequenceStoreDeps {
  runtime: SequenceRuntime;
  clock: Clock;
  log: Logger;
  /** Defaults when a manifest's `sequence` sets none (DEFAULT_SEQUENCE_IDLE_MS, DEFAULT_MAX_SEQUENCES). */
  idleMs?: number;
  maxLive?: number;
}

interface Live extends SequenceEntry {
  version: LoadedVersion;
  release: () => void;
}

/** Host failures after which the sequence's state cannot be trusted to exist any more. */
const STATE_GONE = new Set(["HOST_CRASHED", "MODEL_NOT_READY", "SEQUENCE_UNKNOWN", "NOT_FOUND"]);

/**
 * Sequences with implicit state (issue 18, docs/protocol.md "Sequences"): which version and host each
 * live sequence is bound to, when it was last used, and the order of its frames. The state tensors
 * themselves are in the model host (host-sequences.ts); this is the agent's bookkeeping around them.
 * Decisions are sequence-plan.ts's (pure); this file does the I/O and the timers.
 *
 * Invariants:
 * - Frames of one sequence run one after the other in arrival order (a promise chain per id): the
 *   decision for a frame is taken when the frames before it are done, so a frame after an `end`
 *   sees the sequence gone. Different sequences are not ordered against each other.
 * - A sequence is bound to the version it started on, whose host it holds (holdForSequences): a hot
 *   swap lets it finish there; the next start goes to the new serving version.
 * - A frame never runs on a host other than the one holding its state: when the version's host pid
 *   changed (crash restart, idle reload) or the run failed with the host, it is SEQUENCE_LOST.
 */
export function createSequenceStore(deps: SequenceStoreDeps): SequenceStore {
  const log = deps.log.child({ component: "sequences" });
  const defaults: SequenceLimits = {
    idleMs: deps.idleMs ?? DEFAULT_SEQUENCE_IDLE_MS,
    maxLive: deps.maxLive ?? DEFAULT_MAX_SEQUENCES,
  };
  const table = new Map<string, Live>();
  const chains = new Map<string, Promise<unknown>>();
  const limitsByModel = new Map<string, SequenceLimits>();
  const idleMsOf = (model: string) => (limitsByModel.get(model) ?? defaults).idleMs;
  let sweep: { at: number; cancel(): void } | null = null;

  const keyOf = (model: string, id: string) => `${model}\u0000${id}`;
  /** Sequences counted against the limit: a lost one holds no state, only its tombstone. */
  const liveOf = (model: string) => {
    let n = 0;
    for (const e of table.values()) if (e.model === model && e.lost === null) n++;
    return n;
  };

  /** Its state is gone: later frames get SEQUENCE_LOST until a new start or its expiry. */
  function markLost(e: Live, why: string): void {
    if (e.lost !== null) return;
    e.lost = why;
    e.release();
    log.warn({ model: e.model, id: e.id, why }, "sequence lost its state");
  }

  function forget(key: string, e: Live, dropInHost: boolean): void {
    if (table.get(key) !== e) return;
    table.delete(key);
    if (e.lost === null) e.release();
    if (dropInHost) {
      deps.runtime.dropSequences(e.version, [e.id]).catch((err) => log.debug({ err, id: e.id }, "drop failed"));
    }
  }

  function expire(): void {
    sweep = null;
    const now = deps.clock.now();
    for (const e of expiredSequences(table.values(), now, idleMsOf) as Live[]) {
      log.debug({ model: e.model, id: e.id }, "sequence expired");
      forget(keyOf(e.model, e.id), e, true);
    }
    arm();
  }

  /** One timer, at the earliest expiry; re-armed after every frame and sweep. */
  function arm(): void {
    const at = nextExpiry(table.values(), idleMsOf);
    if (at === null) {
      sweep?.cancel();
      sweep = null;
      return;
    }
    if (sweep && sweep.at <= at) return;
    sweep?.cancel();
    const t = deps.clock.setTimeout(expire, Math.max(0, at - deps.clock.now()));
    sweep = { at, cancel: () => t.cancel() };
  }

  /** The version a start binds to: the one named, else the serving one. */
  function target(req: SequenceStepRequest): LoadedVersion {
    const rt = deps.runtime;
    const serving = rt.serving().get(req.model);
    if (req.version === undefined || serving?.installed.version === req.version) {
      if (serving) return serving;
      throw new EdgeFleetError("MODEL_NOT_READY", `model ${req.model} has no serving version`);
    }
    const v = rt
      .loaded()
      .find(
        (x) => x.installed.model === req.model && x.installed.version === req.version && rt.stateOf(x) === "loaded",
      );
    if (!v) throw new EdgeFleetError("NOT_FOUND", `model ${req.model} has no loaded version ${req.version}`);
    return v;
  }

  async function run(req: SequenceStepRequest): Promise<RawInferResult> {
    const key = keyOf(req.model, req.id);
    let e = table.get(key);
    const pid = e ? safePid(e.version) : null;
    // Limits come from the version a start binds to; a continuing frame uses its own version's.
    const bindTo = req.start ? target(req) : (e?.version ?? null);
    if (bindTo && !bindTo.installed.manifest.sequence) {
      throw new EdgeFleetError("BAD_REQUEST", `model ${req.model} declares no sequence state (manifest "sequence")`);
    }
    // Limits per model from the manifest of the version last bound to (a frame of no sequence sets none).
    const limits = bindTo ? limitsFor(bindTo.installed.manifest, defaults) : (limitsByModel.get(req.model) ?? defaults);
    limitsByModel.set(req.model, limits);
    const plan = planStep(e, req, liveOf(req.model), limits, pid);
    if (plan.kind === "refuse") {
      if (plan.error.code === "SEQUENCE_LOST" && e) markLost(e, plan.error.message);
      throw plan.error;
    }
    if (e && req.version !== undefined && e.version.installed.version !== req.version && !req.start) {
      throw new EdgeFleetError(
        "BAD_REQUEST",
        `sequence ${req.id} runs on ${e.version.installed.version}, not ${req.version}`,
      );
    }
    if (plan.kind === "start") {
      // A restart on another version (or host) leaves the old state behind: drop it there.
      if (e) forget(key, e, e.lost === null && (e.version !== bindTo || safePid(e.version) !== safePid(bindTo!)));
      const v = bindTo!;
      e = {
        id: req.id,
        model: req.model,
        version: v,
        pid: safePid(v) ?? -1,
        lastUsed: deps.clock.now(),
        busy: 0,
        lost: null,
        release: deps.runtime.holdForSequences(v),
      };
      table.set(key, e);
    }
    const entry = e!;
    entry.busy++;
    try {
      if (!req.start && req.version === undefined) await followCompatibleSwap(entry);
      const res = await deps.runtime.runSequenceStep(entry.version, {
        inputs: req.inputs,
        ...(req.outputs ? { outputs: req.outputs } : {}),
        step: { id: req.id, start: req.start, end: req.end },
      });
      entry.lastUsed = deps.clock.now();
      // The start ran on the host that has the state now (a parked host was reloaded by it).
      if (req.start) entry.pid = safePid(entry.version) ?? -1;
      if (req.end) forget(key, entry, false);
      return res;
    } catch (err) {
      const e2 = toEdgeFleetError(err, "INFERENCE_FAILED");
      if (STATE_GONE.has(e2.code) && !req.start) {
        const why = `${e2.code}: ${e2.message}`;
        markLost(entry, why);
        throw new EdgeFleetError("SEQUENCE_LOST", `sequence ${req.id} of ${req.model} lost its state (${why})`, {
          details: { cause: e2.code },
        });
      }
      // The host changed nothing (host-sequences.ts): a failed start leaves no sequence, a failed frame
      // leaves the state as it was, and the app may send the frame again.
      if (req.start) forget(key, entry, false);
      entry.lastUsed = deps.clock.now();
      throw e2;
    } finally {
      entry.busy--;
      arm();
    }
  }

  /**
   * A swap to a version whose manifest says its state is compatible with this sequence's version
   * (`sequence.stateCompatibleWith`): the sequence moves there, state and all, at its next frame, and
   * releases the old host. Otherwise it stays where it started.
   */
  async function followCompatibleSwap(e: Live): Promise<void> {
    const to = deps.runtime.serving().get(e.model);
    if (!to || to === e.version) return;
    if (!to.installed.manifest.sequence?.stateCompatibleWith.includes(e.version.installed.version)) return;
    const moved = await deps.runtime.moveSequences(e.version, to, [e.id]);
    if (!moved.includes(e.id)) throw new EdgeFleetError("SEQUENCE_UNKNOWN", `no state for ${e.id} in the old host`);
    const release = deps.runtime.holdForSequences(to);
    e.release();
    e.release = release;
    e.version = to;
    e.pid = safePid(to) ?? -1;
    log.debug({ model: e.model, id: e.id, to: to.installed.version }, "sequence moved to a state-compatible version");
  }

  function safePid(v: LoadedVersion): number | null {
    try {
      return deps.runtime.hostPid(v);
    } catch {
      return null;
    }
  }

  /** Runs `fn` after every earlier operation on the same sequence (arrival order). */
  function inOrder<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = chains.get(key) ?? Promise.resolve();
    const p = before.then(fn);
    const settled = p.catch(() => undefined);
    chains.set(key, settled);
    void settled.then(() => {
      if (chains.get(key) === settled) chains.delete(key);
    });
    return p;
  }

  return {
    step: (req) => inOrder(keyOf(req.model, req.id), () => run(req)),
    end(model, id) {
      const key = keyOf(model, id);
      return inOrder(key, async () => {
        const e = table.get(key);
        if (e) forget(key, e, e.lost === null);
        arm();
      });
    },
    live: (model) => (model === undefined ? table.size : liveOf(model)),
    close() {
      sweep?.cancel();
      sweep = null;
      for (const [key, e] of table) forget(key, e, false);
    },
  };
}

type RawRecorder = (
  inferRaw: (req: RawInferRequest) => Promise<RawInferResult>,
) => (req: RawInferRequest) => Promise<RawInferResult>;

/**
 * `runtime` whose sequence frames are recorded as the app's requests (`source: api`) by the telemetry
 * recorder's frame tap (telemetry's `tapFrames`: output summaries and drift, like JSON requests):
 * without it they would count as the agent's own work. The tap only wraps the call in its context, so
 * the frame rides along on the request object.
 */
export function recordedAsApi(runtime: SequenceRuntime, tapRaw: RawRecorder): SequenceRuntime {
  type Carried = RawInferRequest & { frame: Parameters<SequenceRuntime["runSequenceStep"]> };
  const run = tapRaw((req) => runtime.runSequenceStep(...(req as Carried).frame));
  return {
    serving: () => runtime.serving(),
    loaded: () => runtime.loaded(),
    stateOf: (v) => runtime.stateOf(v),
    hostPid: (v) => runtime.hostPid(v),
    dropSequences: (v, ids) => runtime.dropSequences(v, ids),
    holdForSequences: (v) => runtime.holdForSequences(v),
    moveSequences: (a, b, ids) => runtime.moveSequences(a, b, ids),
    runSequenceStep: (v, req) => run({ model: v.installed.model, inputs: req.inputs, frame: [v, req] } as Carried),
  };
}
