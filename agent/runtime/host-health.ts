import type { Clock } from "../../shared/clock.js";
import type { RawTensor } from "../../shared/tensors.js";

/**
 * Number of NaN/±Inf elements in a host's outputs. Float outputs only (integer types cannot hold
 * them); float16 arrives as raw bits in a Uint16Array, where exponent all-ones means Inf/NaN. Pure.
 */
export function countNonFinite(outputs: Record<string, RawTensor>): number {
  let n = 0;
  for (const t of Object.values(outputs)) {
    if (t.type === "float32" || t.type === "float64") {
      const data = t.data as Float32Array | Float64Array;
      for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) n++;
    } else if (t.type === "float16") {
      const data = t.data as Uint16Array;
      for (let i = 0; i < data.length; i++) if ((data[i]! & 0x7c00) === 0x7c00) n++;
    }
  }
  return n;
}

/** Restart backoff for a crashed host (architecture.md §5): first restart after 250 ms, doubling, capped at 30 s. */
export const RESTART_BASE_MS = 250;
export const RESTART_MAX_MS = 30_000;
/** Crashes older than this no longer count toward the backoff (a host that ran a while is "healthy"). */
export const CRASH_MEMORY_MS = 60_000;

/**
 * Delay before restarting a host that crashed at `now`, given its earlier crash times (not this one). A crash loop
 * backs off exponentially so it does not eat the CPU the serving model needs. Pure.
 */
export function restartDelayMs(crashTimes: readonly number[], now: number): number {
  const recent = crashTimes.filter((t) => now - t < CRASH_MEMORY_MS).length;
  return Math.min(RESTART_BASE_MS * 2 ** recent, RESTART_MAX_MS);
}

/** Sleeps `ms` on `clock`; `onCancel` receives a function that ends the sleep early. */
export function cancellableSleep(clock: Clock, ms: number, onCancel: (cancel: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = clock.setTimeout(resolve, ms);
    onCancel(() => {
      t.cancel();
      resolve();
    });
  });
}

/** Waits for `p` at most `ms` (never rejects): a caller then proceeds rather than hang on a stuck restart. */
export function bounded(clock: Clock, p: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = clock.setTimeout(resolve, ms);
    void p.then(() => {
      t.cancel();
      resolve();
    });
  });
}
