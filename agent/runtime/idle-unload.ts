import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { Version } from "./runtime-types.js";

/**
 * Low-power behaviour (issue 16, profile `idleUnloadSeconds`): a serving version nobody has asked
 * for in that long has its model host stopped ("parked") and started again by the next request,
 * which pays the reload (reported per version: `reloads`, `lastReloadMs`). A parked version stays
 * the model's serving version and stays ready: routing, readiness and the v2 repository index do
 * not change, only the first request's latency does.
 *
 * Invariants (single event loop):
 * - Only a version that is serving, idle (`inFlight` 0, no live sequence), not background, not
 *   retiring and not restarting is parked, decided synchronously at the timer's firing.
 * - A request increments `inFlight` before `awake`, so no version is parked under a request; a
 *   request that arrives while a park is stopping the host waits for the stop, then reloads.
 * - Concurrent requests to a parked version share one reload (`waking`); a failed reload leaves it
 *   parked and fails those requests, and the next request tries again.
 * - Timers are armed only when none is pending: one timer per version, not one per request.
 */
export interface IdleUnload {
  /** A request on `v` finished (or `v` was loaded): restarts the idle clock. */
  touch(v: Version): void;
  /** Null when `v`'s host runs; otherwise the reload every caller awaits before running. */
  awake(v: Version): Promise<void> | null;
  info(v: Version): { parked: boolean; reloads: number; lastReloadMs: number | null };
  /** `v` is retiring: no more parking; waits for a reload or park in progress to settle. */
  forget(v: Version): Promise<void>;
}

export interface IdleUnloadDeps {
  log: Logger;
  clock: Clock;
  /** Null or undefined: never park (the default for every profile but low-power ones). */
  idleMs: number | null | undefined;
  /** Stops `v`'s host as an expected exit (no crash restart). */
  stopHost(v: Version): Promise<void>;
  /** Starts a new host for `v` with its spawn options and placement, and makes it `v.host`. */
  startHost(v: Version): Promise<void>;
}

interface ParkState {
  lastUsedAt: number;
  timer: { cancel(): void } | null;
  parked: boolean;
  parking: Promise<void> | null;
  waking: Promise<void> | null;
  reloads: number;
  lastReloadMs: number | null;
  forgotten: boolean;
}

const label = (v: Version) => `${v.installed.model}@${v.installed.version}`;

export function createIdleUnload(deps: IdleUnloadDeps): IdleUnload {
  const { log, clock, idleMs } = deps;
  const states = new WeakMap<Version, ParkState>();
  const stateOf = (v: Version): ParkState => {
    let s = states.get(v);
    if (!s) {
      s = {
        lastUsedAt: clock.now(),
        timer: null,
        parked: false,
        parking: null,
        waking: null,
        reloads: 0,
        lastReloadMs: null,
        forgotten: false,
      };
      states.set(v, s);
    }
    return s;
  };

  // A host with live sequences (`holds`, issue 18) holds their state: parking it would lose them.
  const eligible = (v: Version) =>
    v.state === "serving" &&
    v.inFlight === 0 &&
    v.holds === 0 &&
    !v.background &&
    !v.retiring &&
    !v.restarting &&
    v.host.alive();

  function arm(v: Version, s: ParkState, ms: number): void {
    s.timer = clock.setTimeout(() => {
      s.timer = null;
      if (s.forgotten || s.parked) return;
      const idle = clock.now() - s.lastUsedAt;
      if (idle < idleMs!) return arm(v, s, idleMs! - idle);
      if (!eligible(v)) return arm(v, s, idleMs!);
      park(v, s);
    }, ms);
  }

  function park(v: Version, s: ParkState): void {
    s.parked = true;
    log.info(
      { version: label(v), idleSeconds: Math.round((clock.now() - s.lastUsedAt) / 1000) },
      "parking idle model host",
    );
    s.parking = deps
      .stopHost(v)
      .catch((err: unknown) => log.warn({ err, version: label(v) }, "stopping an idle model host failed"))
      .finally(() => {
        s.parking = null;
      });
  }

  async function reload(v: Version, s: ParkState): Promise<void> {
    if (s.parking) await s.parking;
    const started = performance.now();
    await deps.startHost(v);
    s.parked = false;
    s.reloads++;
    s.lastReloadMs = Math.round((performance.now() - started) * 10) / 10;
    s.lastUsedAt = clock.now();
    log.info({ version: label(v), reloadMs: s.lastReloadMs, reloads: s.reloads }, "idle model host reloaded on demand");
    if (!s.timer && !s.forgotten) arm(v, s, idleMs!);
  }

  return {
    touch(v) {
      if (!idleMs) return;
      const s = stateOf(v);
      s.lastUsedAt = clock.now();
      if (!s.timer && !s.parked && !s.forgotten) arm(v, s, idleMs);
    },
    awake(v) {
      const s = states.get(v);
      if (!s?.parked) return null;
      s.waking ??= reload(v, s).finally(() => {
        s.waking = null;
      });
      return s.waking;
    },
    info(v) {
      const s = states.get(v);
      return { parked: s?.parked ?? false, reloads: s?.reloads ?? 0, lastReloadMs: s?.lastReloadMs ?? null };
    },
    async forget(v) {
      const s = states.get(v);
      if (!s) return;
      s.forgotten = true;
      s.timer?.cancel();
      s.timer = null;
      await s.waking?.catch(() => undefined);
      await s.parking;
    },
  };
}
