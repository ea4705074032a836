import { describe, expect, it } from "vitest";
import { createPageHinkley } from "../../../agent/feedback/page-hinkley.js";
import { seededRandom } from "../../../shared/seeded-random.js";

/**
 * Issue 22: the concept-drift detector's stated behaviour (agent/feedback/page-hinkley.ts), checked
 * on seeded Bernoulli error streams with the default parameters.
 */
describe("Page-Hinkley on the joined error stream", () => {
  it("stays quiet on a stationary 10 % error rate: no alarm in 200 runs of 5,000 predictions", () => {
    let alarms = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = seededRandom(seed);
      const ph = createPageHinkley();
      for (let i = 0; i < 5000; i++) if (ph.add(rnd() < 0.1 ? 1 : 0)) alarms++;
    }
    expect(alarms).toBe(0);
  });

  it("detects a rise from 10 % to 30 % errors in every run: median ~140 predictions, 95 % within 250, all within 400", () => {
    const delays: number[] = [];
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = seededRandom(1000 + seed);
      const ph = createPageHinkley();
      let before = false;
      for (let i = 0; i < 1000; i++) if (ph.add(rnd() < 0.1 ? 1 : 0)) before = true;
      expect(before).toBe(false);
      let delay = -1;
      for (let i = 1; i <= 2000; i++) {
        const alarm = ph.add(rnd() < 0.3 ? 1 : 0);
        if (alarm) {
          delay = i;
          // The alarm's own figures name the level before and after the change.
          expect(alarm.meanRecent).toBeGreaterThan(alarm.meanBefore);
          expect(alarm.statistic).toBeGreaterThan(alarm.threshold);
          break;
        }
      }
      delays.push(delay);
    }
    delays.sort((a, b) => a - b);
    expect(delays[0]).toBeGreaterThan(0); // every run detected it
    expect(delays.at(-1)).toBeLessThanOrEqual(400);
    expect(delays[Math.floor(delays.length * 0.95)]).toBeLessThanOrEqual(250);
    const median = delays[delays.length >> 1]!;
    expect(median).toBeGreaterThan(80);
    expect(median).toBeLessThan(200);
  });

  it("reports a lasting change once, then starts again from the new level", () => {
    const rnd = seededRandom(5);
    const ph = createPageHinkley();
    for (let i = 0; i < 500; i++) ph.add(rnd() < 0.05 ? 1 : 0);
    let alarms = 0;
    for (let i = 0; i < 5000; i++) if (ph.add(rnd() < 0.4 ? 1 : 0)) alarms++;
    expect(alarms).toBe(1);
  });
});
