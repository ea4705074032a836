import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { delayToNext, everySecondsOf, scheduleFlush } from "../../../agent/telemetry/flush-schedule.js";

describe("everySecondsOf (which flushCron expressions run on a plain timer)", () => {
  it("lists the seconds of a seconds-only expression", () => {
    expect(everySecondsOf("*/10 * * * * *")).toEqual([0, 10, 20, 30, 40, 50]);
    expect(everySecondsOf(" */7  * * * * * ")).toEqual([0, 7, 14, 21, 28, 35, 42, 49, 56]);
    expect(everySecondsOf("*/1 * * * * *")).toHaveLength(60);
    expect(everySecondsOf("* * * * * *")).toHaveLength(60);
  });

  it("leaves everything else to node-cron", () => {
    for (const e of [
      "*/10 * * * *",
      "0 * * * * *",
      "*/10 */2 * * * *",
      "*/0 * * * * *",
      "*/60 * * * * *",
      "5-10 * * * * *",
      "*/10 * * * * MON",
    ]) {
      expect(everySecondsOf(e), e).toBeNull();
    }
  });
});

describe("delayToNext", () => {
  const at = (s: number, ms = 0) => Date.UTC(2026, 11, 3, 12, 0, s, ms);
  it("is strictly after now, aligned to the wall-clock second", () => {
    const tens = everySecondsOf("*/10 * * * * *")!;
    expect(delayToNext(tens, at(5, 300))).toBe(4700);
    expect(delayToNext(tens, at(10))).toBe(10_000);
    expect(delayToNext(tens, at(9, 999))).toBe(1);
    expect(delayToNext(tens, at(55))).toBe(5000); // wraps to second 0 of the next minute
    expect(delayToNext(everySecondsOf("*/7 * * * * *")!, at(57))).toBe(3000);
  });
});

describe("scheduleFlush", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 3, 12, 0, 5, 300));
  });
  afterEach(() => vi.useRealTimers());

  it("runs at each matching second until destroyed; an error is reported and the schedule goes on", () => {
    let runs = 0;
    const errors: unknown[] = [];
    const task = scheduleFlush(
      "*/10 * * * * *",
      () => {
        runs++;
        if (runs === 2) throw new Error("flush failed");
      },
      { name: "t", onError: (e) => errors.push(e) },
    );
    vi.advanceTimersByTime(4699);
    expect(runs).toBe(0);
    vi.advanceTimersByTime(1);
    expect(runs).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(runs).toBe(2);
    expect(errors).toHaveLength(1);
    vi.advanceTimersByTime(30_000);
    expect(runs).toBe(5);
    task.destroy();
    vi.advanceTimersByTime(60_000);
    expect(runs).toBe(5);
  });

  it("hands other expressions to node-cron, whose task it destroys", async () => {
    const task = scheduleFlush("0 0 1 1 *", () => {}, { name: "t", onError: () => {} });
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    await task.destroy();
    expect(vi.getTimerCount()).toBe(0);
  });
});
