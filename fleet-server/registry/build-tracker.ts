import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { BuildRepo, BuildRetention } from "../store/build-repo.js";

/**
 * Model builds (`POST /v1/models?async=1`, `GET /v1/model-builds/{id}`). The state transitions
 * are pure functions of (state, event, now); the tracker keeps running builds in memory (their
 * freshest state) and writes every build through to SQLite (store/build-repo.ts), so finished
 * builds stay queryable after a restart and builds a dead process left running are marked
 * `failed` with `BUILD_INTERRUPTED` when the next one starts.
 */

/** Build phases in the order they run; a build only goes through those that apply. */
import { BUILD_PHASES } from "../../shared/http/models.js";

export { BUILD_PHASES };
export type BuildPhase = (typeof BUILD_PHASES)[number];

/** Progress callback threaded through the build: `done` of `total` units in `phase` (omitted: no count). */
export type BuildProgressFn = (phase: BuildPhase, done?: number, total?: number) => void;

const BuildStatusSchema = z.enum(["running", "succeeded", "failed"]);
export type BuildStatus = z.infer<typeof BuildStatusSchema>;
const ProgressSchema = z.object({ done: z.number(), total: z.number() }).nullable();

const PhaseRecordSchema = z.object({
  name: z.enum(BUILD_PHASES),
  status: BuildStatusSchema,
  startedAt: z.string(),
  endedAt: z.string().optional(),
  /** Last progress reported in this phase (kept after the phase ends). */
  progress: ProgressSchema,
});
export type PhaseRecord = z.infer<typeof PhaseRecordSchema>;

/** A build as kept in memory and stored in `model_builds.state` (parsed on the way out of SQLite). */
export const BuildStateSchema = z.object({
  id: z.string(),
  status: BuildStatusSchema,
  createdAt: z.string(),
  endedAt: z.string().optional(),
  /** What is being built, when the caller said (shown in the view and in the interrupted message). */
  model: z.object({ name: z.string(), version: z.string() }).optional(),
  /** Current (or last) phase; null while the build waits for an earlier one to finish. */
  phase: z.enum(BUILD_PHASES).nullable(),
  phases: z.array(PhaseRecordSchema),
  /** Progress of the current phase. */
  progress: ProgressSchema,
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type BuildState = z.infer<typeof BuildStateSchema>;
export type BuildSubject = NonNullable<BuildState["model"]>;

const iso = (ms: number) => new Date(ms).toISOString();

export function newBuild(id: string, now: number, model?: BuildSubject): BuildState {
  return {
    id,
    status: "running",
    createdAt: iso(now),
    ...(model ? { model } : {}),
    phase: null,
    phases: [],
    progress: null,
  };
}

/** Closes the current phase with `status`, if one is running. */
function closePhase(phases: PhaseRecord[], status: BuildStatus, now: number): PhaseRecord[] {
  const last = phases.at(-1);
  if (last?.status !== "running") return phases;
  return [...phases.slice(0, -1), { ...last, status, endedAt: iso(now) }];
}

/**
 * Applies a progress report. A new phase closes the current one; within a phase `done` never
 * goes backwards and never exceeds `total`. Reports after the build ended, or for a phase that
 * comes before the current one, are ignored.
 */
export function applyProgress(
  state: BuildState,
  phase: BuildPhase,
  done: number | undefined,
  total: number | undefined,
  now: number,
): BuildState {
  if (state.status !== "running") return state;
  if (state.phase !== null && BUILD_PHASES.indexOf(phase) < BUILD_PHASES.indexOf(state.phase)) return state;
  let phases = state.phases;
  let previous = state.phase === phase ? state.progress : null;
  if (state.phase !== phase) {
    phases = [
      ...closePhase(phases, "succeeded", now),
      { name: phase, status: "running", startedAt: iso(now), progress: null },
    ];
    previous = null;
  }
  let progress: BuildState["progress"] = null;
  if (done !== undefined && total !== undefined) {
    const t = Math.max(0, total);
    progress = { done: Math.min(t, Math.max(previous?.done ?? 0, done)), total: t };
  } else {
    progress = previous;
  }
  const last = phases.at(-1)!;
  phases = [...phases.slice(0, -1), { ...last, progress }];
  return { ...state, phase, phases, progress };
}

export function succeedBuild(state: BuildState, result: unknown, now: number): BuildState {
  if (state.status !== "running") return state;
  return {
    ...state,
    status: "succeeded",
    endedAt: iso(now),
    phases: closePhase(state.phases, "succeeded", now),
    result,
  };
}

export function failBuild(state: BuildState, error: { code: string; message: string }, now: number): BuildState {
  if (state.status !== "running") return state;
  return { ...state, status: "failed", endedAt: iso(now), phases: closePhase(state.phases, "failed", now), error };
}

/**
 * A build a previous server process left running: it can never finish (its work died with the
 * process), so it fails with `BUILD_INTERRUPTED` and tells the operator what to do.
 */
export function interruptBuild(state: BuildState, now: number): BuildState {
  const where = state.phase ? `during ${state.phase}` : "before its first phase";
  const what = state.model ? `${state.model.name}@${state.model.version}` : "the version";
  const check = state.model
    ? ` (unless GET /v1/models/${state.model.name}/versions/${state.model.version} shows it)`
    : "";
  return failBuild(
    state,
    {
      code: "BUILD_INTERRUPTED",
      message: `the fleet server stopped ${where}, so ${what} was not registered${check}; upload the model and create the version again (fleetctl models push)`,
    },
    now,
  );
}

/** Default: persisted progress may lag the live one by at most this much (see `shouldPersist`). */
export const PROGRESS_PERSIST_MS = 1000;

/**
 * Whether a transition must be written to SQLite now. Status and phase changes always are; a
 * progress-only change only once `minIntervalMs` passed since the last write. Why: quantizing
 * reports per node and sample runs per sample, hundreds of reports a second, and each write is a
 * SQLite transaction on the event loop that also serves MQTT. Live builds are answered from
 * memory, so the stored progress only matters after a crash, when the build is failed anyway and
 * its last phase is what the operator needs.
 */
export function shouldPersist(
  prev: BuildState,
  next: BuildState,
  lastWriteAt: number,
  now: number,
  minIntervalMs: number,
): boolean {
  if (next === prev) return false;
  if (next.status !== prev.status || next.phase !== prev.phase) return true;
  return now - lastWriteAt >= minIntervalMs;
}

/** The JSON view of `GET /v1/model-builds/{id}`. */
export function buildView(s: BuildState) {
  return {
    id: s.id,
    status: s.status,
    createdAt: s.createdAt,
    ...(s.endedAt !== undefined ? { endedAt: s.endedAt } : {}),
    ...(s.model !== undefined ? { model: s.model } : {}),
    phase: s.phase,
    phases: s.phases.map((p) => ({
      name: p.name,
      status: p.status,
      startedAt: p.startedAt,
      ...(p.endedAt !== undefined ? { endedAt: p.endedAt } : {}),
      progress: p.progress,
    })),
    progress: s.progress,
    ...(s.status === "succeeded" ? { result: s.result } : {}),
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}
export type BuildView = ReturnType<typeof buildView>;

const DAY_MS = 86_400_000;
/**
 * Finished builds are kept 30 days and at most 200 (whichever drops a build first). A build is a
 * handle for watching one upload; the version itself lives in the registry for good. A record
 * holds the full result (variants with per-node quantization reports: ~16 KB for Silero VAD,
 * a few hundred KB for models with thousands of nodes), so the count bound keeps the table small.
 */
export const DEFAULT_BUILD_RETENTION: BuildRetention = { maxFinished: 200, maxAgeMs: 30 * DAY_MS };

export interface BuildTrackerDeps {
  log: Logger;
  clock: Clock;
  repo: BuildRepo;
  retention?: BuildRetention;
  /** Minimum time between two progress-only writes of one build (`shouldPersist`). */
  progressPersistMs?: number;
  newId?: () => string;
  /** Replicas (issue 14): this process's replica id, stored with each build it runs. */
  owner?: string;
  /**
   * Whether the replica that stored a running build is gone. Default: always, which is right for
   * one server (every build stored as running at start belongs to a previous process).
   */
  ownerGone?: (owner: string | null) => boolean;
  /** With `ownerGone`: how often running builds of other replicas are checked again. */
  sweepEveryMs?: number;
}

/**
 * Creating the tracker sweeps the builds table: a build stored as running whose replica is gone
 * (with one server: every one, it belonged to a previous process) is marked interrupted at once;
 * then old records are pruned. With replicas the sweep repeats, for replicas that die later.
 */
export function createBuildTracker(deps: BuildTrackerDeps) {
  const { log, clock, repo } = deps;
  const retention = deps.retention ?? DEFAULT_BUILD_RETENTION;
  const minIntervalMs = deps.progressPersistMs ?? PROGRESS_PERSIST_MS;
  const newId = deps.newId ?? randomUUID;
  /** Running builds of this process: the live state and when it was last written. */
  const live = new Map<string, { state: BuildState; writtenAt: number }>();

  /** Writes after the first one never throw into the build: a lost write costs a stale record, not the build. */
  function write(state: BuildState): boolean {
    try {
      repo.save(state);
      return true;
    } catch (err) {
      log.warn({ err, buildId: state.id }, "could not persist model build state");
      return false;
    }
  }

  function prune(): void {
    try {
      const dropped = repo.prune(retention, clock.now());
      if (dropped > 0) log.info({ dropped }, "old model builds pruned");
    } catch (err) {
      log.warn({ err }, "could not prune model builds");
    }
  }

  function update(id: string, next: (s: BuildState) => BuildState): void {
    const entry = live.get(id);
    if (!entry) return;
    const now = clock.now();
    const s = next(entry.state);
    const written = shouldPersist(entry.state, s, entry.writtenAt, now, minIntervalMs) && write(s);
    entry.state = s;
    if (written) entry.writtenAt = now;
    // A finished build is read from SQLite from now on; kept in memory only if that write failed.
    if (s.status !== "running" && written) {
      live.delete(id);
      prune();
    }
  }

  function parseStored(doc: unknown, id: string): BuildState {
    const parsed = BuildStateSchema.safeParse(doc);
    if (!parsed.success) {
      log.error({ buildId: id, issues: parsed.error.issues.slice(0, 5) }, "stored model build is unreadable");
      throw new EdgeFleetError("INTERNAL", `model build ${id} is stored in a form this server cannot read`);
    }
    return parsed.data;
  }

  const owner = deps.owner ?? null;
  const ownerGone = deps.ownerGone ?? (() => true);
  function sweep(): void {
    const interrupted: string[] = [];
    try {
      for (const row of repo.running()) {
        if (owner !== null && row.owner === owner) continue;
        const parsed = BuildStateSchema.safeParse(row.doc);
        if (!parsed.success) {
          log.error({ issues: parsed.error.issues.slice(0, 5) }, "skipping an unreadable running model build");
          continue;
        }
        if (!ownerGone(row.owner)) continue;
        if (write(interruptBuild(parsed.data, clock.now()))) interrupted.push(parsed.data.id);
      }
    } catch (err) {
      log.warn({ err }, "could not sweep model builds");
    }
    if (interrupted.length > 0) {
      log.warn({ builds: interrupted }, "model builds of a stopped server marked failed (BUILD_INTERRUPTED)");
    }
  }
  sweep();
  prune();
  let sweepTimer: { cancel(): void } | null = null;
  const resweep = () => {
    sweepTimer = clock.setTimeout(() => {
      sweep();
      resweep();
    }, deps.sweepEveryMs ?? 10_000);
  };
  if (deps.ownerGone) resweep();

  return {
    /**
     * Starts `work` in the background and returns the new build at once (already stored: a
     * failing first write throws here, so the caller never gets an id that is not on disk).
     * `work` reports its phases through the callback; its result (or error) ends the build.
     */
    start(work: (onProgress: BuildProgressFn) => Promise<unknown>, model?: BuildSubject): BuildView {
      const id = newId();
      const now = clock.now();
      const state = newBuild(id, now, model);
      repo.save(state, owner);
      live.set(id, { state, writtenAt: now });
      const onProgress: BuildProgressFn = (phase, done, total) =>
        update(id, (s) => applyProgress(s, phase, done, total, clock.now()));
      void Promise.resolve()
        .then(() => work(onProgress))
        .then(
          (result) => update(id, (s) => succeedBuild(s, result, clock.now())),
          (err: unknown) => {
            const e =
              err instanceof EdgeFleetError
                ? { code: err.code, message: err.message }
                : { code: "INTERNAL", message: "internal error while building the model" };
            if (!(err instanceof EdgeFleetError)) log.error({ err, buildId: id }, "model build failed");
            else log.info({ buildId: id, code: e.code, msg: e.message }, "model build failed");
            update(id, (s) => failBuild(s, e, clock.now()));
          },
        );
      return buildView(state);
    },
    get(id: string): BuildView {
      const running = live.get(id);
      if (running) return buildView(running.state);
      const doc = repo.get(id);
      if (doc === null) {
        throw new EdgeFleetError(
          "NOT_FOUND",
          `model build ${id} not found (finished builds are kept ${Math.round(retention.maxAgeMs / DAY_MS)} days, at most ${retention.maxFinished})`,
        );
      }
      return buildView(parseStored(doc, id));
    },
    /** Ends the periodic sweep (server shutdown). */
    stop(): void {
      sweepTimer?.cancel();
    },
  };
}
export type BuildTracker = ReturnType<typeof createBuildTracker>;
