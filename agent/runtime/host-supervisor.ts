import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { cancellableSleep, restartDelayMs } from "./host-health.js";
import { type HostExit, type ModelHost, type ModelHostDeps, spawnModelHost } from "./model-host.js";
import type { Version } from "./runtime-types.js";

export interface HostSupervisorDeps {
  log: Logger;
  clock: Clock;
  hostDeps: ModelHostDeps;
  /** Whether `v` is its model's serving version (decides the state after a restart). */
  isServing(v: Version): boolean;
  onHostExit(v: Version, exit: HostExit): void;
  /** Re-applies a version's placement (priority, CPUs) to a restarted host. */
  applyPlacement(v: Version): Promise<void>;
}

/**
 * Crash supervision of model hosts (architecture.md §5: "a model host that dies, even by a native crash, is
 * restarted"). Invariants: only the version's *current* host is watched; a retiring version is
 * never restarted, and a host spawned while it started retiring is stopped at once, so no host
 * outlives its version. `v.restarting` is set while a restart is under way so requests can wait.
 */
export function createHostSupervisor(deps: HostSupervisorDeps) {
  const { log, clock } = deps;
  const label = (v: Version) => `${v.installed.model}@${v.installed.version}`;

  const sleep = (v: Version, ms: number) =>
    cancellableSleep(clock, ms, (cancel) => {
      v.cancelBackoff = cancel;
    });

  /** Subscribes to unexpected exits of `host` while it is `v`'s current host. */
  function watch(v: Version, host: ModelHost): void {
    void host.exited.then((exit) => {
      if (exit.expected || v.host !== host) return;
      v.state = "crashed";
      deps.onHostExit(v, exit);
      if (v.retiring) return;
      v.restarts++;
      v.crashTimes.push(clock.now());
      v.restarting = restartLoop(v);
    });
  }

  /** Restarts `v`'s host with backoff until one runs or `v` retires (a serving model must keep serving). */
  async function restartLoop(v: Version): Promise<void> {
    for (;;) {
      const delay = restartDelayMs(v.crashTimes.slice(0, -1), clock.now());
      log.warn({ version: label(v), delayMs: delay, restarts: v.restarts }, "restarting crashed model host");
      await sleep(v, delay);
      v.cancelBackoff = null;
      if (v.retiring) break;
      try {
        const host = await spawnModelHost(deps.hostDeps, v.spawn);
        if (v.retiring) {
          await host.stop();
          break;
        }
        v.host = host;
        if (v.placement) await deps.applyPlacement(v);
        // After the await on purpose: a crash during it is still seen (`exited` is a promise), and its
        // restart then starts after this one has finished below, not in the middle of it.
        watch(v, host);
        v.state = deps.isServing(v) ? "serving" : "loaded";
        log.info({ version: label(v), pid: host.pid }, "model host restarted");
        break;
      } catch (err) {
        v.crashTimes.push(clock.now());
        log.error({ err, version: label(v) }, "model host restart failed");
      }
    }
    v.restarting = null;
  }

  return { watch };
}
