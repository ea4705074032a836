import { describe, expect, it } from "vitest";
import {
  applyProgress,
  buildsToEvict,
  buildView,
  createBuildTracker,
  failBuild,
  newBuild,
  succeedBuild,
} from "../../../fleet-server/registry/build-tracker.js";
import { createFakeClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { createLogger } from "../../../shared/logger.js";

describe("build state transitions", () => {
  it("opens a phase on its first report and closes the previous one at the same instant", () => {
    let s = newBuild("b1", 1000);
    expect(s).toMatchObject({ status: "running", phase: null, phases: [], progress: null });
    s = applyProgress(s, "inspecting", undefined, undefined, 1000);
    s = applyProgress(s, "recording-samples", 0, 3, 1500);
    s = applyProgress(s, "recording-samples", 2, 3, 1700);
    expect(s.phase).toBe("recording-samples");
    expect(s.progress).toEqual({ done: 2, total: 3 });
    expect(s.phases).toEqual([
      {
        name: "inspecting",
        status: "succeeded",
        startedAt: new Date(1000).toISOString(),
        endedAt: new Date(1500).toISOString(),
        progress: null,
      },
      {
        name: "recording-samples",
        status: "running",
        startedAt: new Date(1500).toISOString(),
        progress: { done: 2, total: 3 },
      },
    ]);
  });

  it("keeps done monotone and within total, and ignores reports for earlier phases", () => {
    let s = applyProgress(newBuild("b", 0), "quantizing", 5, 10, 1);
    s = applyProgress(s, "quantizing", 3, 10, 2);
    expect(s.progress).toEqual({ done: 5, total: 10 });
    s = applyProgress(s, "quantizing", 12, 10, 3);
    expect(s.progress).toEqual({ done: 10, total: 10 });
    s = applyProgress(s, "validating-int8", 0, 4, 4);
    const back = applyProgress(s, "quantizing", 1, 10, 5);
    expect(back).toBe(s);
    expect(s.phases.map((p) => [p.name, p.status, p.progress])).toEqual([
      ["quantizing", "succeeded", { done: 10, total: 10 }],
      ["validating-int8", "running", { done: 0, total: 4 }],
    ]);
  });

  it("ends with a result or an error, closing the running phase; later events change nothing", () => {
    const running = applyProgress(newBuild("b", 0), "packing", 1, 2, 10);
    const ok = succeedBuild(running, { name: "m" }, 20);
    expect(ok).toMatchObject({ status: "succeeded", endedAt: new Date(20).toISOString(), result: { name: "m" } });
    expect(ok.phases[0]).toMatchObject({ status: "succeeded", endedAt: new Date(20).toISOString() });
    expect(applyProgress(ok, "signing", 0, 2, 30)).toBe(ok);
    expect(failBuild(ok, { code: "INTERNAL", message: "x" }, 30)).toBe(ok);

    const failed = failBuild(running, { code: "MODEL_LOAD_FAILED", message: "bad" }, 25);
    expect(failed.phases[0]).toMatchObject({ status: "failed", endedAt: new Date(25).toISOString() });
    const view = buildView(failed);
    expect(view).toMatchObject({ status: "failed", error: { code: "MODEL_LOAD_FAILED", message: "bad" } });
    expect("result" in view).toBe(false);
  });

  it("evicts the oldest finished builds beyond the limit, never running ones", () => {
    const done = (id: string) => succeedBuild(newBuild(id, 0), null, 1);
    const states = [done("a"), newBuild("r", 0), done("b"), done("c"), done("d")];
    expect(buildsToEvict(states, 2)).toEqual(["a", "b"]);
    expect(buildsToEvict(states, 10)).toEqual([]);
    expect(buildsToEvict(states, 0)).toEqual(["a", "b", "c", "d"]);
  });
});

describe("build tracker", () => {
  const log = createLogger({ name: "build-tracker-test", level: "silent", pretty: false });

  it("runs work in the background and records its phases, result and errors", async () => {
    const clock = createFakeClock(5000);
    let n = 0;
    const tracker = createBuildTracker({ log, clock, newId: () => `b${++n}`, maxFinished: 1 });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const started = tracker.start(async (onProgress) => {
      onProgress("recording-samples", 1, 2);
      clock.advance(100);
      await gate;
      onProgress("packing", 1, 1);
      return { ok: true };
    });
    expect(started).toMatchObject({ id: "b1", status: "running" });
    await Promise.resolve();
    await Promise.resolve();
    expect(tracker.get("b1")).toMatchObject({
      status: "running",
      phase: "recording-samples",
      progress: { done: 1, total: 2 },
    });
    release();
    await gate;
    await new Promise((r) => setImmediate(r));
    expect(tracker.get("b1")).toMatchObject({
      status: "succeeded",
      phase: "packing",
      result: { ok: true },
      endedAt: new Date(5100).toISOString(),
    });

    tracker.start(async () => {
      throw new EdgeFleetError("MODEL_LOAD_FAILED", "not onnx");
    });
    await new Promise((r) => setImmediate(r));
    expect(tracker.get("b2")).toMatchObject({
      status: "failed",
      error: { code: "MODEL_LOAD_FAILED", message: "not onnx" },
    });
    // maxFinished 1: the older finished build is forgotten.
    expect(() => tracker.get("b1")).toThrow(/not found/);
    tracker.start(async () => {
      throw new Error("boom");
    });
    await new Promise((r) => setImmediate(r));
    expect(tracker.get("b3").error).toEqual({ code: "INTERNAL", message: "internal error while building the model" });
  });
});
