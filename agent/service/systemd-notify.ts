import { createRequire } from "node:module";
import type { Logger } from "pino";
import type { ReportedState } from "../../shared/schemas/device-state.js";

/**
 * systemd integration (issue 16): `Type=notify` readiness, watchdog pings and `STATUS=` lines, by the
 * sd_notify protocol (a datagram of `KEY=value` lines to $NOTIFY_SOCKET; systemd.service(5),
 * sd_notify(3)). Sent through the one-function addon in agent/native/sd-notify (Node has no AF_UNIX
 * datagram sockets). Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op.
 *
 * Watchdog: pings come from a timer on the agent's event loop, so a loop that is stuck (a sync loop,
 * a deadlock in JS) stops them and systemd restarts the agent after WatchdogSec. The interval is half
 * of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, and pings start only after READY=1: a slow
 * start is systemd's TimeoutStartSec to judge, not the watchdog's.
 */

export interface NotifyTransport {
  send(socketPath: string, message: string): void;
}

interface Addon {
  notify(socketPath: string, message: string): void;
}

/** The addon as a transport, or null when it was not built here (then systemd integration is off). */
export function loadNotifyTransport(): NotifyTransport | null {
  try {
    const require = createRequire(import.meta.url);
    const addon = require("../native/sd-notify/build/Release/sd_notify.node") as Addon;
    return { send: (path, message) => addon.notify(path, message) };
  } catch {
    return null;
  }
}

export interface SystemdNotifier {
  /** READY=1 with a status line; starts the watchdog pings when systemd asked for them. */
  ready(status: string): void;
  /** A new STATUS= line (sent only when it changed). */
  status(status: string): void;
  /** STOPPING=1; stops the pings. */
  stopping(): void;
  /** Stops the pings (nothing is sent). */
  close(): void;
  /** Milliseconds between watchdog pings, or null when the watchdog is off. */
  readonly watchdogIntervalMs: number | null;
}

export interface NotifierDeps {
  env: NodeJS.ProcessEnv;
  pid: number;
  log: Logger;
  /** Defaults to the addon. */
  transport?: NotifyTransport | null;
  /** Called on each ping to refresh the status line (e.g. from the updater's reported state). */
  currentStatus?: () => string;
}

/**
 * Watchdog interval from the environment systemd sets: half of WATCHDOG_USEC, and only when
 * WATCHDOG_PID is unset or this process (the variable is inherited by children, which must not ping).
 * Pure.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/** One STATUS= line from the reported state: each model's state and versions. Pure. */
export function statusLine(reported: Pick<ReportedState, "models">): string {
  if (reported.models.length === 0) return "serving: no models installed";
  const parts = reported.models.map((m) => {
    const committed = m.committed ? ` ${m.committed.version}` : "";
    const candidate = m.candidate ? ` → ${m.candidate.version}` : "";
    return `${m.model} ${m.state}${committed}${candidate}`;
  });
  // STATUS= is one line; systemctl shows it in full, keep it short anyway.
  return `serving: ${parts.join("; ")}`.replace(/[\r\n]/g, " ").slice(0, 400);
}

export function createSystemdNotifier(deps: NotifierDeps): SystemdNotifier {
  const socketPath = deps.env.NOTIFY_SOCKET;
  const transport = socketPath ? (deps.transport === undefined ? loadNotifyTransport() : deps.transport) : null;
  const interval = transport ? watchdogIntervalMs(deps.env, deps.pid) : null;
  if (socketPath && !transport) {
    deps.log.warn("NOTIFY_SOCKET is set but the sd-notify addon is not built: systemd will not see READY=1");
  }
  let lastStatus: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let failures = 0;

  const send = (message: string): void => {
    if (!transport || !socketPath) return;
    try {
      transport.send(socketPath, message);
      failures = 0;
    } catch (err) {
      // Logged once per run of failures: a missing socket every few seconds must not flood the log.
      if (failures++ === 0) deps.log.warn({ err }, "sd_notify failed");
    }
  };
  const statusField = (status: string): string => {
    if (status === lastStatus) return "";
    lastStatus = status;
    return `\nSTATUS=${status}`;
  };

  return {
    watchdogIntervalMs: interval,
    ready(status) {
      send(`READY=1${statusField(status)}\nMAINPID=${deps.pid}`);
      if (interval !== null && timer === null) {
        timer = setInterval(() => {
          send(`WATCHDOG=1${deps.currentStatus ? statusField(deps.currentStatus()) : ""}`);
        }, interval);
        // The agent's own handles keep it alive; the watchdog must not be the reason it stays.
        timer.unref();
      }
    },
    status(status) {
      const field = statusField(status);
      if (field) send(field.slice(1));
    },
    stopping() {
      if (timer) clearInterval(timer);
      timer = null;
      send("STOPPING=1\nSTATUS=stopping");
    },
    close() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
