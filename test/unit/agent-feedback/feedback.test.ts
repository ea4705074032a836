import { describe, expect, it } from "vitest";
import { createFeedbackStats } from "../../../agent/feedback/feedback-stats.js";
import { createPredictionWindow, type Prediction, summarise } from "../../../agent/feedback/prediction-window.js";
import { createFakeClock } from "../../../shared/clock.js";
import { seededRandom } from "../../../shared/seeded-random.js";

const pred = (id: string, label: number, at = 0, version = "1.0.0", arm: string | null = null): Prediction => ({
  model: "m",
  id,
  version,
  arm,
  at,
  summary: { kind: "class", label },
});

describe("prediction window (issue 22)", () => {
  it("joins once, tells duplicate, unknown and expired apart, and keeps at most `capacity`", () => {
    const clock = createFakeClock(1000);
    const w = createPredictionWindow({ clock, capacity: 3, horizonMs: 60_000 });
    for (const id of ["a", "b", "c", "d"]) w.record(pred(id, 1, clock.now()));
    expect(w.size()).toBe(3);
    expect(w.take("m", "a")).toEqual({ found: false, reason: "unknown" }); // evicted: oldest first
    expect(w.take("m", "b").found).toBe(true);
    expect(w.take("m", "b")).toEqual({ found: false, reason: "already-joined" });
    expect(w.take("other-model", "c")).toEqual({ found: false, reason: "unknown" });
    clock.advance(60_001);
    expect(w.take("m", "c")).toEqual({ found: false, reason: "expired" });
    // A reused id replaces the older prediction: the newest answer is what the caller acted on.
    w.record(pred("d", 7, clock.now()));
    const again = w.take("m", "d");
    expect(again.found && again.prediction.summary).toEqual({ kind: "class", label: 7 });
  });

  it("summarises a [1, C] output as its arg-max and anything else as its first values", () => {
    expect(summarise({ type: "float32", dims: [1, 4], data: new Float32Array([0.1, 0.7, 0.2, 0]) })).toEqual({
      kind: "class",
      label: 1,
    });
    expect(summarise({ type: "float32", dims: [1, 1], data: new Float32Array([0.25]) })).toEqual({
      kind: "values",
      values: [0.25],
    });
    expect(summarise({ type: "string", dims: [1], data: ["x"] })).toBeNull();
  });
});

describe("feedback statistics (issue 22)", () => {
  it("accuracy and confusion equal the hand count on a seeded labelled stream, per version and arm", () => {
    const rnd = seededRandom(42);
    const stats = createFeedbackStats();
    const expected = new Map<string, { n: number; ok: number; cells: Map<string, number> }>();
    for (let i = 0; i < 2000; i++) {
      const arm = rnd() < 0.3 ? "candidate" : "control";
      const predicted = Math.floor(rnd() * 5);
      // The truth agrees 80 % of the time on the control arm, 60 % on the candidate.
      const truth = rnd() < (arm === "control" ? 0.8 : 0.6) ? predicted : Math.floor(rnd() * 5);
      stats.add(pred(`r${i}`, predicted, 0, "2.0.0", arm), { label: truth });
      const e = expected.get(arm) ?? { n: 0, ok: 0, cells: new Map() };
      e.n++;
      if (truth === predicted) e.ok++;
      e.cells.set(`${truth}/${predicted}`, (e.cells.get(`${truth}/${predicted}`) ?? 0) + 1);
      expected.set(arm, e);
    }
    const snap = stats.snapshot("m");
    expect(snap).toHaveLength(2);
    for (const s of snap) {
      const e = expected.get(s.arm!)!;
      expect(s.classification.count).toBe(e.n);
      expect(s.classification.correct).toBe(e.ok);
      expect(s.classification.accuracy).toBe(e.ok / e.n);
      for (const [cell, n] of e.cells) {
        const [t, p] = cell.split("/");
        expect(s.classification.confusion[t!]![p!]).toBe(n);
      }
    }
  });

  it("MAE and RMSE for regression outputs; a label for a regression output counts as mismatched", () => {
    const stats = createFeedbackStats();
    const p = (id: string, values: number[]): Prediction => ({ ...pred(id, 0), summary: { kind: "values", values } });
    expect(stats.add(p("a", [1, 2]), { target: [1.5, 1] })).toBe("regression"); // errors -0.5, 1
    expect(stats.add(p("b", [0, 0]), { target: [2, 0] })).toBe("regression"); // errors -2, 0
    expect(stats.add(p("c", [0]), { label: 1 })).toBe("mismatched");
    expect(stats.add(p("d", [0]), { target: [1, 2] })).toBe("mismatched");
    const [s] = stats.snapshot();
    expect(s!.regression.count).toBe(4);
    expect(s!.regression.mae).toBeCloseTo((0.5 + 1 + 2 + 0) / 4, 12);
    expect(s!.regression.rmse).toBeCloseTo(Math.sqrt((0.25 + 1 + 4 + 0) / 4), 12);
    expect(s!.mismatched).toBe(2);
  });
});
