import { describe, expect, it } from "vitest";
import { createWindowController } from "../../../agent/updater/chunk-window.js";

/** The adaptive window rule (agent/updater/chunk-window.ts): 2 × rate × minRtt / chunk, within bounds. */
const C = 128 * 1024;
const bounds = { min: 2, max: 16, initial: 4 };

/** Feeds `rounds` rounds in which each reply arrives `rttMs` after its request, `perMs` chunks per ms. */
function drive(
  w: ReturnType<typeof createWindowController>,
  rounds: number,
  rttMs: number,
  chunksPerMs: number,
  t0 = 0,
) {
  let t = t0;
  for (let r = 0; r < rounds; r++) {
    const n = w.current();
    for (let i = 0; i < n; i++) {
      t += 1 / chunksPerMs;
      w.onReply(C, rttMs, t);
    }
  }
  return t;
}

describe("adaptive chunk window", () => {
  it("starts at the initial window and keeps it until a round has been measured", () => {
    const w = createWindowController(C, bounds);
    expect(w.current()).toBe(4);
    w.onReply(C, 5, 0);
    w.onReply(C, 5, 1);
    expect(w.current()).toBe(4);
  });

  it("settles at twice the bandwidth-delay product", () => {
    // 1 chunk per ms delivered, 3 ms round trip without queueing: BDP = 3 chunks, window 6.
    const w = createWindowController(C, bounds);
    drive(w, 6, 3, 1);
    expect(w.current()).toBe(6);
  });

  it("grows to the upper bound on a fast, long link and no further", () => {
    const w = createWindowController(C, bounds);
    drive(w, 8, 40, 2); // BDP = 80 chunks
    expect(w.current()).toBe(16);
  });

  it("shrinks to the lower bound when the round trip is tiny", () => {
    const w = createWindowController(C, bounds);
    drive(w, 6, 0.1, 1);
    expect(w.current()).toBe(2);
  });

  it("does not take an RTT sample from a retried request (Karn)", () => {
    const w = createWindowController(C, bounds);
    w.onReply(C, 0.001, 0); // a genuine 1 µs sample would pin the window to the minimum...
    const w2 = createWindowController(C, bounds);
    w2.onReply(C, null, 0); // ...a retried request's reply gives none
    drive(w, 6, 3, 1, 1);
    drive(w2, 6, 3, 1, 1);
    expect(w.current()).toBe(2);
    expect(w2.current()).toBe(6);
  });

  it("halves on a timeout, never below the lower bound", () => {
    const w = createWindowController(C, bounds);
    drive(w, 8, 40, 2);
    expect(w.current()).toBe(16);
    w.onTimeout(1000);
    expect(w.current()).toBe(8);
    for (let i = 0; i < 5; i++) w.onTimeout(1000);
    expect(w.current()).toBe(2);
  });

  it("refuses inconsistent bounds", () => {
    expect(() => createWindowController(C, { min: 4, max: 2, initial: 3 })).toThrow(/window bounds/);
    expect(() => createWindowController(C, { min: 0, max: 2, initial: 1 })).toThrow(/window bounds/);
  });
});
