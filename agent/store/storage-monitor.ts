import type { Clock } from "../../shared/clock.js";
import type { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceEvent, ReportedStorage, StorageFault } from "../../shared/schemas/device-state.js";
import { type BackoffOptions, fullJitterDelay } from "../transport/backoff.js";
import { freeBytesAt, type StorageFaultDetails } from "./storage-faults.js";

/**
 * The agent's view of its own storage (issue 20 §2). Components report faults per area; the
 * monitor keeps them for `reported.storage`, publishes a `storage.fault` event when one appears,
 * changes code or clears, and while a database runs in memory tries to put it back on disk with
 * full-jitter backoff (never a fixed period, architecture.md §4), telling listeners when it did.
 */
export type StorageArea = "agent-db" | "telemetry-db" | "updates";

export interface StorageMonitorDeps {
  log: Logger;
  clock: Clock;
  deviceId: string;
  /** Statted for free bytes when a fault does not carry them. */
  dataDir: string;
  publishEvent(e: DeviceEvent): void;
  nextEventSeq(): number;
  random?: () => number;
  backoff?: BackoffOptions;
}

export interface StorageMonitor {
  /** A fault in `area`, or null when the area works again. */
  report(area: StorageArea, error: EdgeFleetError | null): void;
  /** Called on each retry while `area` is faulted; returns true once it works again. */
  addRestorer(area: StorageArea, restore: () => boolean): void;
  onRecovered(listener: (area: StorageArea) => void): void;
  /** Any change of the faults (appeared, changed code, cleared): `reported` should be published. */
  onChange(listener: () => void): void;
  telemetryDropped(reason: string, records: number): void;
  telemetryVolatile(records: number): void;
  faults(): StorageFault[];
  snapshot(): ReportedStorage;
  close(): void;
}

/** Storage retries: start fast (a freed disk is noticed quickly), settle at a minute. */
export const STORAGE_BACKOFF: BackoffOptions = { baseMs: 1000, capMs: 60_000 };

export function createStorageMonitor(deps: StorageMonitorDeps): StorageMonitor {
  const { log, clock } = deps;
  const random = deps.random ?? Math.random;
  const backoff = deps.backoff ?? STORAGE_BACKOFF;
  const faults = new Map<StorageArea, StorageFault>();
  const restorers = new Map<StorageArea, () => boolean>();
  const listeners: ((area: StorageArea) => void)[] = [];
  const changed: (() => void)[] = [];
  const notify = () => {
    for (const l of changed) {
      try {
        l();
      } catch (err) {
        log.warn({ err }, "storage change listener failed");
      }
    }
  };
  const dropped: Record<string, number> = {};
  let volatile = 0;
  let attempt = 0;
  let timer: { cancel(): void } | null = null;
  let closed = false;

  const publish = (area: StorageArea, fault: StorageFault | null) => {
    try {
      deps.publishEvent({
        type: "storage.fault",
        deviceId: deps.deviceId,
        ts: new Date(clock.now()).toISOString(),
        eventSeq: deps.nextEventSeq(),
        area,
        fault,
      });
    } catch (err) {
      log.warn({ err, area }, "could not publish the storage event");
    }
  };

  const schedule = () => {
    if (timer || closed) return;
    if (![...faults.keys()].some((a) => restorers.has(a))) return;
    const delay = fullJitterDelay(attempt++, random, backoff);
    timer = clock.setTimeout(() => {
      timer = null;
      retry();
    }, delay);
  };

  const retry = () => {
    for (const area of [...faults.keys()]) {
      const restore = restorers.get(area);
      let ok = false;
      try {
        ok = restore?.() ?? false;
      } catch (err) {
        log.warn({ err, area }, "storage restore attempt failed");
      }
      if (ok) monitor.report(area, null);
    }
    schedule();
  };

  const monitor: StorageMonitor = {
    report(area, error) {
      const prev = faults.get(area);
      if (!error) {
        if (!prev) return;
        faults.delete(area);
        log.info({ area, was: prev.error.code }, "storage works again");
        publish(area, null);
        if (faults.size === 0) attempt = 0;
        for (const l of listeners) l(area);
        notify();
        return;
      }
      const d = (error.details ?? {}) as Partial<StorageFaultDetails>;
      const path = typeof d.path === "string" ? d.path : null;
      const freeBytes = typeof d.freeBytes === "number" ? d.freeBytes : freeBytesAt(path ?? deps.dataDir);
      const fault: StorageFault = {
        area,
        error: error.toJSON(),
        path,
        freeBytes: freeBytes === null ? null : Math.max(0, Math.floor(freeBytes)),
        since: prev?.error.code === error.code ? prev.since : new Date(clock.now()).toISOString(),
      };
      faults.set(area, fault);
      if (prev?.error.code !== error.code) {
        log.error({ area, code: error.code, path, freeBytes }, "storage fault");
        publish(area, fault);
        notify();
      }
      schedule();
    },
    addRestorer(area, restore) {
      restorers.set(area, restore);
      if (faults.has(area)) schedule();
    },
    onRecovered(listener) {
      listeners.push(listener);
    },
    onChange(listener) {
      changed.push(listener);
    },
    telemetryDropped(reason, records) {
      dropped[reason] = (dropped[reason] ?? 0) + records;
    },
    telemetryVolatile(records) {
      volatile += records;
    },
    faults: () => [...faults.values()],
    snapshot: () => ({
      faults: [...faults.values()].slice(0, 8),
      telemetryDropped: { ...dropped },
      telemetryVolatile: volatile,
    }),
    close() {
      closed = true;
      timer?.cancel();
      timer = null;
    },
  };
  return monitor;
}
