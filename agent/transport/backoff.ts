/**
 * Full-jitter exponential backoff (architecture.md §4: "agents reconnect with full-jitter exponential
 * backoff, never a fixed period"). Pure: the random source is injected so tests can seed it.
 * A thousand devices losing the same broker spread their reconnects over the whole window
 * instead of stampeding it at fixed instants.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000 };

/** `random(0, min(cap, base * 2^attempt))`; `random` returns values in [0, 1). */
export function fullJitterDelay(attempt: number, random: () => number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  const exp = Math.min(Math.max(0, Math.floor(attempt)), 30); // 2^30 overflows any sane cap already
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** exp);
  return Math.floor(random() * ceiling);
}
