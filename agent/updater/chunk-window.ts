/**
 * How many chunk requests the downloader keeps in flight (issue 17), sized from what it measures.
 *
 * Rule (docs/protocol.md, "Chunk pull protocol"): the window is twice the bandwidth-delay product in
 * chunks, `ceil(2 × rate × minRtt / chunk)`, clamped to [min, max], where
 *   - rate    is the highest delivery rate (bytes/ms) of the last 4 rounds (a round = one window's
 *             worth of bytes received); the max, not the mean, so a round slowed by the device's own
 *             work does not shrink the pipe,
 *   - minRtt  is the lowest request → reply time seen in this download (Karn: retried requests are
 *             not sampled), the round trip without queueing.
 * A window-limited download delivers `window` chunks per round trip, so while the measured round
 * trip stays near its minimum the rule doubles the window each round; once the rate stops growing
 * (the link, the broker or the server is the bottleneck) extra requests only queue, and the window
 * settles at 2 × BDP (BBR's cwnd gain): the pipe stays full, the queue short. A timeout halves it
 * (a loss or a stalled server) and the rate history starts over. `max` bounds memory and what a
 * resume re-requests (at most one window, see downloader.ts). Persist rounds (fdatasync) do not
 * enter the rule: requests may run up to `max` chunks ahead of the persisted offset, whatever the
 * window, so a persist round does not hold them back.
 *
 * Pure: the caller passes its own clock readings.
 */
export interface WindowBounds {
  min: number;
  max: number;
  initial: number;
}

export const DEFAULT_WINDOW_BOUNDS: WindowBounds = { min: 2, max: 16, initial: 4 };

const GAIN = 2;
const RATE_ROUNDS = 4;

export interface WindowController {
  current(): number;
  /** A reply to a request sent `rttMs` ago (null when it had been retried: no RTT sample). */
  onReply(bytes: number, rttMs: number | null, nowMs: number): void;
  onTimeout(nowMs: number): void;
  /** What the rule last used, for tracing. */
  state(): { window: number; minRttMs: number; rateBytesPerMs: number };
}

export function createWindowController(chunkBytes: number, bounds: WindowBounds = DEFAULT_WINDOW_BOUNDS) {
  if (!(bounds.min >= 1 && bounds.min <= bounds.initial && bounds.initial <= bounds.max)) {
    throw new Error(`window bounds must satisfy 1 <= min <= initial <= max: ${JSON.stringify(bounds)}`);
  }
  let window = bounds.initial;
  let minRtt = Number.POSITIVE_INFINITY;
  let rates: number[] = [];
  let roundStart: number | null = null;
  let roundBytes = 0;

  const clamp = (w: number) => Math.min(bounds.max, Math.max(bounds.min, w));
  const maxRate = () => rates.reduce((a, b) => Math.max(a, b), 0);

  const controller: WindowController = {
    current: () => window,
    onReply(bytes, rttMs, nowMs) {
      if (rttMs !== null && rttMs >= 0) minRtt = Math.min(minRtt, rttMs);
      if (roundStart === null) {
        // The first reply opens the first round: the time before it is one RTT, not delivery.
        roundStart = nowMs;
        return;
      }
      roundBytes += bytes;
      if (roundBytes < window * chunkBytes) return;
      const elapsed = nowMs - roundStart;
      if (elapsed > 0) {
        rates = [...rates.slice(-(RATE_ROUNDS - 1)), roundBytes / elapsed];
        if (Number.isFinite(minRtt)) {
          window = clamp(Math.ceil((GAIN * maxRate() * minRtt) / chunkBytes));
        }
      }
      roundStart = nowMs;
      roundBytes = 0;
    },
    onTimeout(nowMs) {
      window = clamp(Math.floor(window / 2));
      rates = [];
      roundStart = nowMs;
      roundBytes = 0;
    },
    state: () => ({
      window,
      minRttMs: Number.isFinite(minRtt) ? minRtt : 0,
      rateBytesPerMs: maxRate(),
    }),
  };
  return controller;
}
