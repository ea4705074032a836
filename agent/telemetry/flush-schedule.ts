import cron from "node-cron";

export interface FlushSchedule {
  destroy(): void | Promise<void>;
}

/**
 * Seconds of the minute an expression fires at when it only constrains the seconds field
 * (`* * * * * *`, `*\/N * * * * *`, as the default flushCron `*\/10 * * * * *`); null otherwise.
 * Pure (exported for its unit test).
 */
export function everySecondsOf(expression: string): number[] | null {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 6 || fields.slice(1).some((f) => f !== "*")) return null;
  const m = /^\*(?:\/(\d{1,2}))?$/.exec(fields[0]!);
  if (!m) return null;
  const step = m[1] === undefined ? 1 : Number(m[1]);
  if (step < 1 || step > 59) return null;
  const seconds: number[] = [];
  for (let s = 0; s < 60; s += step) seconds.push(s);
  return seconds;
}

/** Milliseconds from `nowMs` to the next wall-clock second in `seconds` (strictly after now). */
export function delayToNext(seconds: readonly number[], nowMs: number): number {
  const base = Math.floor(nowMs / 1000) * 1000;
  const second = Math.floor(nowMs / 1000) % 60;
  const next = seconds.find((s) => s > second) ?? seconds[0]! + 60;
  return base + (next - second) * 1000 - nowMs;
}

/**
 * The telemetry flush timer (agent config `telemetry.flushCron`). An expression that only names
 * seconds of the minute fires at the same instants as node-cron but from a plain timer: node-cron
 * reads the wall clock through `Intl.DateTimeFormat` on every tick, and the first use of Intl
 * loads ICU's date data, about 7 MiB of the node binary's pages and malloc an idle agent keeps
 * resident (issue 16, docs/benchmarks.md "Agent idle, fourth pass"). Seconds are the same in every
 * time zone, so no zone is needed. Any other expression is scheduled by node-cron. Either way a
 * run never overlaps another (`fn` is synchronous) and an error is reported, not thrown.
 */
export function scheduleFlush(
  expression: string,
  fn: () => void,
  opts: { name: string; onError: (err: unknown) => void },
): FlushSchedule {
  const seconds = everySecondsOf(expression);
  if (!seconds) {
    const task = cron.schedule(expression, fn, { noOverlap: true, name: opts.name });
    return { destroy: () => task.destroy() };
  }
  let timer: NodeJS.Timeout | undefined;
  // Counted from the slot just served, not from Date.now() alone: a timer that fires a
  // millisecond early would otherwise find the same slot again and run twice.
  const arm = (fromMs: number) => {
    const slot = fromMs + delayToNext(seconds, fromMs);
    timer = setTimeout(() => {
      arm(Math.max(Date.now(), slot));
      try {
        fn();
      } catch (err) {
        opts.onError(err);
      }
    }, slot - Date.now());
  };
  arm(Date.now());
  return {
    destroy() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
