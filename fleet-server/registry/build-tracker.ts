import { randomUUID } from "node:crypto";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

/**
 * Model builds tracked in memory (`POST /v1/models?async=1`, `GET /v1/model-builds/{id}`).
 * The state transitions are pure functions of (state, event, now); the tracker only keeps the
 * states in a bounded map. A restarted server forgets every build (docs/operations.md).
 */

/** Build phases in the order they run; a build only goes through those that apply. */
export const BUILD_PHASES = [
  "inspecting",
  "recording-samples",
  "quantizing",
  "validating-int8",
  "packing",
  "signing",
  "pending-signature",
] as const;
export type BuildPhase = (typeof BUILD_PHASES)[number];

/** Progress callback threaded through the build: `done` of `total` units in `phase` (omitted: no count). */
export type BuildProgressFn = (phase: BuildPhase, done?: number, total?: number) => void;

export type BuildStatus = "running" | "succeeded" | "failed";

export interface PhaseRecord {
  name: BuildPhase;
  status: BuildStatus;
  startedAt: string;
  endedAt?: string;
  /** Last progress reported in this phase (kept after the phase ends). */
  progress: { done: number; total: number } | null;
}

export interface BuildState {
  id: string;
  status: BuildStatus;
  createdAt: string;
  endedAt?: string;
  /** Current (or last) phase; null while the build waits for an earlier one to finish. */
  phase: BuildPhase | null;
  phases: PhaseRecord[];
  /** Progress of the current phase. */
  progress: { done: number; total: number } | null;
  result?: unknown;
  error?: { code: string; message: string };
}

const iso = (ms: number) => new Date(ms).toISOString();

export function newBuild(id: string, now: number): BuildState {
  return { id, status: "running", createdAt: iso(now), phase: null, phases: [], progress: null };
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
 * Which builds to forget: finished ones beyond the newest `maxFinished` (by insertion order,
 * oldest first). Running builds are never evicted.
 */
export function buildsToEvict(states: BuildState[], maxFinished: number): string[] {
  const finished = states.filter((s) => s.status !== "running");
  return finished.slice(0, Math.max(0, finished.length - maxFinished)).map((s) => s.id);
}

/** The JSON view of `GET /v1/model-builds/{id}`. */
export function buildView(s: BuildState) {
  return {
    id: s.id,
    status: s.status,
    createdAt: s.createdAt,
    ...(s.endedAt !== undefined ? { endedAt: s.endedAt } : {}),
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

export const DEFAULT_MAX_FINISHED_BUILDS = 50;

export interface BuildTrackerDeps {
  log: Logger;
  clock: Clock;
  /** Finished builds kept for `GET`; older ones are forgotten. */
  maxFinished?: number;
  newId?: () => string;
}

export function createBuildTracker(deps: BuildTrackerDeps) {
  const { log, clock } = deps;
  const maxFinished = deps.maxFinished ?? DEFAULT_MAX_FINISHED_BUILDS;
  const newId = deps.newId ?? randomUUID;
  const builds = new Map<string, BuildState>();

  function update(id: string, next: (s: BuildState) => BuildState): void {
    const s = builds.get(id);
    if (!s) return;
    builds.set(id, next(s));
  }

  function evict(): void {
    for (const id of buildsToEvict([...builds.values()], maxFinished)) builds.delete(id);
  }

  return {
    /**
     * Starts `work` in the background and returns the new build at once. `work` reports its
     * phases through the callback; its result (or error) ends the build.
     */
    start(work: (onProgress: BuildProgressFn) => Promise<unknown>): BuildView {
      const id = newId();
      builds.set(id, newBuild(id, clock.now()));
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
        )
        .finally(evict);
      return buildView(builds.get(id)!);
    },
    get(id: string): BuildView {
      const s = builds.get(id);
      if (!s) throw new EdgeFleetError("NOT_FOUND", `model build ${id} not found (builds are kept in memory only)`);
      return buildView(s);
    },
  };
}
export type BuildTracker = ReturnType<typeof createBuildTracker>;
