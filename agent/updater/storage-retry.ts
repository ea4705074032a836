import type { Clock } from "../../shared/clock.js";
import type { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { isStorageCode, withFreeBytes } from "../store/storage-faults.js";
import { STORAGE_BACKOFF, type StorageMonitor } from "../store/storage-monitor.js";
import { type BackoffOptions, fullJitterDelay } from "../transport/backoff.js";

export interface StorageRetry {
  /** An update failed with a storage code: report it and retry after a full-jitter backoff. */
  onFault(e: EdgeFleetError): void;
  /**
   * An update failed with `e`: a storage fault gets the free bytes measured now (issue 20 §2: "with
   * free bytes and the path") and is reported and retried; any other error is returned unchanged.
   */
  failed(e: EdgeFleetError): EdgeFleetError;
  /** After a reconcile: when no model or side waits for the disk any more, the fault is over. */
  settle(records: Iterable<{ state: string; error?: { code: string } | null }>): void;
  /** The disk-writing steps (download, extraction) of an update succeeded: the fault is over. */
  onWritten(): void;
  close(): void;
}

/**
 * Issue 20 §2: an update that failed for the device's disk (full, read-only, I/O) marks nothing
 * bad; the fault is reported (`reported.storage`, a `storage.fault` event) and the same bundle is
 * tried again after a full-jitter backoff (never a fixed period, architecture.md §4), or at once when a
 * database gets back on disk (`onRecovered`) or a new desired state arrives (the updater reconciles).
 */
export function createStorageRetry(deps: {
  log: Logger;
  clock: Clock;
  storage?: Pick<StorageMonitor, "report" | "onRecovered">;
  backoff?: BackoffOptions;
  random?: () => number;
  reconcile(reason: string): void;
  /** Where free bytes are measured when the error names no path. */
  dataDir: string;
}): StorageRetry {
  let timer: { cancel(): void } | null = null;
  let attempt = 0;
  let faulted = false;
  let closed = false;
  deps.storage?.onRecovered(() => deps.reconcile("reconcile after storage recovered"));
  const retry: StorageRetry = {
    failed(e) {
      if (!isStorageCode(e.code)) return e;
      const error = withFreeBytes(e, deps.dataDir);
      retry.onFault(error);
      return error;
    },
    settle(records) {
      for (const r of records) if (r.state === "failed" && isStorageCode(r.error?.code)) return;
      retry.onWritten();
    },
    onFault(e) {
      faulted = true;
      deps.storage?.report("updates", e);
      if (timer || closed) return;
      const delay = fullJitterDelay(attempt++, deps.random ?? Math.random, deps.backoff ?? STORAGE_BACKOFF);
      deps.log.warn({ code: e.code, retryInMs: delay }, "update stopped by a storage fault; trying again later");
      timer = deps.clock.setTimeout(() => {
        timer = null;
        deps.reconcile("reconcile after a storage fault");
      }, delay);
    },
    onWritten() {
      if (!faulted) return;
      faulted = false;
      attempt = 0;
      deps.storage?.report("updates", null);
    },
    close() {
      closed = true;
      timer?.cancel();
      timer = null;
    },
  };
  return retry;
}
