/**
 * Pure planning for batch jobs (no I/O): which items a run still has to do, how they are cut into
 * chunks, run ids, progress and pacing. The runner does the reading, inferring and writing.
 */

export interface JobProgress {
  total: number;
  done: number;
  failed: number;
  /** Items already done when this process picked the run up (0 for a fresh run). */
  doneAtStart: number;
  /** Items this process inferred and committed. */
  processedHere: number;
}

/** Items still to do, in the input's (sorted) order. */
export function remainingItems(all: readonly string[], done: ReadonlySet<string>): string[] {
  return all.filter((item) => !done.has(item));
}

/** Consecutive chunks of at most `size` items; the last may be shorter. */
export function chunkItems<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunk size must be a positive integer, got ${size}`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A run id sortable by start time and unique per job (`20250101T120000Z-0001`). */
export function runIdFor(startedAtMs: number, counter: number): string {
  const iso = new Date(startedAtMs)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${iso}-${String(counter % 10_000).padStart(4, "0")}`;
}

/** Ids sort like input order: stable, locale-independent. */
export function sortItems(items: Iterable<string>): string[] {
  return [...items].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Whether progress is worth a telemetry record: every `stepPercent` of the total (and at the end),
 * so a 10,000-item run produces tens of records, not thousands.
 */
export function progressStepReached(lastReported: number, done: number, total: number, stepPercent = 10): boolean {
  if (total <= 0 || done <= lastReported) return false;
  if (done >= total) return true;
  const step = Math.max(1, Math.floor((total * stepPercent) / 100));
  return Math.floor(done / step) > Math.floor(lastReported / step);
}

/** Milliseconds to wait before the next chunk so the job stays under `maxItemsPerSecond`. */
export function paceDelayMs(processed: number, elapsedMs: number, maxItemsPerSecond: number | undefined): number {
  if (maxItemsPerSecond === undefined || processed <= 0) return 0;
  const earliest = (processed / maxItemsPerSecond) * 1000;
  return Math.max(0, Math.ceil(earliest - elapsedMs));
}

/** Output file name for an item: ids from SQLite may hold characters a file name cannot. */
export function itemFileName(item: string): string {
  return `${encodeURIComponent(item).replace(/\./g, "%2E")}.json`;
}

export function itemFromFileName(file: string): string | null {
  if (!file.endsWith(".json")) return null;
  try {
    return decodeURIComponent(file.slice(0, -".json".length));
  } catch {
    return null;
  }
}

/** Errors that mean "the model is not available right now" (restart, swap, crash): wait and retry. */
export function isRetryable(code: string): boolean {
  return code === "MODEL_NOT_READY" || code === "NOT_FOUND" || code === "HOST_CRASHED" || code === "TIMEOUT";
}
