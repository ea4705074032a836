/** Latency statistics for benchmarks; every scenario prints its figure beside an anchor from the same run (architecture.md §9). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export interface LatencySummary {
  n: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
}

export function summarize(samplesMs: readonly number[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n: sorted.length, p50Ms: r(percentile(sorted, 50)), p99Ms: r(percentile(sorted, 99)), meanMs: r(mean) };
}

/** Times `fn` `n` times sequentially after `warmup` untimed runs. */
export async function timeSequential(n: number, warmup: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

/**
 * `n` calls started on a fixed schedule, one every `intervalMs` (a late call delays only itself: the
 * next starts at its slot or at once). An app polling a sensor looks like this, not like a loop.
 */
export async function timePaced(
  n: number,
  warmup: number,
  intervalMs: number,
  fn: () => Promise<unknown>,
): Promise<number[]> {
  const out: number[] = [];
  const start = performance.now();
  // Warm-up calls keep the schedule too: back-to-back calls would be a different load.
  for (let i = 0; i < warmup + n; i++) {
    const wait = start + i * intervalMs - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const t0 = process.hrtime.bigint();
    await fn();
    if (i >= warmup) out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100;
}

/**
 * Median of `xs` with a 95 % bootstrap interval (percentile method, `iterations` resamples drawn
 * with `random`). Used to say whether an effect is distinguishable from block-to-block noise.
 */
export function medianWithCi(
  xs: readonly number[],
  random: () => number,
  iterations = 2000,
): { median: number; ci95: [number, number] } {
  const med = (v: number[]) =>
    percentile(
      [...v].sort((a, b) => a - b),
      50,
    );
  const meds: number[] = [];
  for (let i = 0; i < iterations; i++) {
    meds.push(med(Array.from(xs, () => xs[Math.floor(random() * xs.length)] as number)));
  }
  meds.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { median: r(med([...xs])), ci95: [r(percentile(meds, 2.5)), r(percentile(meds, 97.5))] };
}

/**
 * median(a) − median(b) with a 95 % bootstrap interval, resampling *pairs* (a[i], b[i]) — e.g. two
 * arms' per-block ratios from the same blocks. With `b` the A/A arm this asks whether an arm moved
 * further from the anchor than a second run of the anchor itself does: an interval containing 0
 * means the effect is not distinguishable from the benchmark's own noise.
 */
export function pairedMedianDifferenceWithCi(
  a: readonly number[],
  b: readonly number[],
  random: () => number,
  iterations = 2000,
): { difference: number; ci95: [number, number] } {
  const n = Math.min(a.length, b.length);
  const med = (v: number[]) =>
    percentile(
      v.sort((x, y) => x - y),
      50,
    );
  const diffs: number[] = [];
  for (let k = 0; k < iterations; k++) {
    const idx = Array.from({ length: n }, () => Math.floor(random() * n));
    diffs.push(med(idx.map((i) => a[i] as number)) - med(idx.map((i) => b[i] as number)));
  }
  diffs.sort((x, y) => x - y);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    difference: r(med(a.slice(0, n)) - med(b.slice(0, n))),
    ci95: [r(percentile(diffs, 2.5)), r(percentile(diffs, 97.5))],
  };
}
