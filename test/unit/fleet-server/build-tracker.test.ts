import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  applyProgress,
  type BuildState,
  buildView,
  createBuildTracker,
  failBuild,
  interruptBuild,
  newBuild,
  shouldPersist,
  succeedBuild,
} from "../../../fleet-server/registry/build-tracker.js";
import { createBuildRepo } from "../../../fleet-server/store/build-repo.js";
import { type Db, openDatabase } from "../../../fleet-server/store/db.js";
import { createFakeClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { createLogger } from "../../../shared/logger.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

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

  it("interrupts a running build in its phase with BUILD_INTERRUPTED, naming the version to push again", () => {
    const running = applyProgress(newBuild("b", 0, { name: "vad", version: "1.2.0" }), "quantizing", 3, 9, 10);
    const s = interruptBuild(running, 50);
    expect(s).toMatchObject({ status: "failed", endedAt: new Date(50).toISOString() });
    expect(s.phases.at(-1)).toMatchObject({ name: "quantizing", status: "failed", progress: { done: 3, total: 9 } });
    expect(s.error?.code).toBe("BUILD_INTERRUPTED");
    expect(s.error?.message).toContain("during quantizing");
    expect(s.error?.message).toContain("vad@1.2.0 was not registered");
    expect(s.error?.message).toContain("GET /v1/models/vad/versions/1.2.0");
    expect(s.error?.message).toMatch(/upload the model and create the version again/);
    expect(interruptBuild(newBuild("n", 0), 1).error?.message).toContain("before its first phase");
    // A finished build stays as it was.
    const done = succeedBuild(running, null, 20);
    expect(interruptBuild(done, 50)).toBe(done);
  });

  it("persists status and phase changes at once, progress-only changes at most every interval", () => {
    const a = applyProgress(newBuild("b", 0), "quantizing", 1, 10, 0);
    const b = applyProgress(a, "quantizing", 2, 10, 100);
    expect(shouldPersist(a, a, 0, 5000, 1000)).toBe(false);
    expect(shouldPersist(a, b, 0, 999, 1000)).toBe(false);
    expect(shouldPersist(a, b, 0, 1000, 1000)).toBe(true);
    expect(shouldPersist(a, applyProgress(a, "packing", 0, 2, 100), 0, 100, 1000)).toBe(true);
    expect(shouldPersist(a, succeedBuild(a, null, 100), 0, 100, 1000)).toBe(true);
  });
});

/** Lets the tracker's promise chain run to its end. */
const settle = () => new Promise((r) => setImmediate(r));

describe("build tracker on SQLite", () => {
  const log = createLogger({ name: "build-tracker-test", level: "silent", pretty: false });
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let db: Db;
  beforeEach(async () => {
    tmp = await makeTempDir("ef-builds-");
    db = openDatabase(tmp.path);
  });
  afterEach(async () => {
    db.close();
    await tmp.cleanup();
  });
  /** A tracker on the test's database file; a second call is what a restarted server creates. */
  const tracker = (clock = createFakeClock(5000), more: { progressPersistMs?: number } = {}) => {
    let n = 0;
    return createBuildTracker({
      log,
      clock,
      repo: createBuildRepo(db),
      newId: () => `b${++n}-${clock.now()}`,
      ...more,
    });
  };
  const stored = (id: string) => createBuildRepo(db).get(id) as BuildState | null;

  it("runs work in the background, records phases, result and errors, and stores each build", async () => {
    const clock = createFakeClock(5000);
    const t = tracker(clock);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const started = t.start(
      async (onProgress) => {
        onProgress("recording-samples", 1, 2);
        clock.advance(100);
        await gate;
        onProgress("packing", 1, 1);
        return { ok: true };
      },
      { name: "vad", version: "1.0.0" },
    );
    const id = started.id;
    expect(started).toMatchObject({ status: "running", model: { name: "vad", version: "1.0.0" } });
    // Stored before start() returned.
    expect(stored(id)).toMatchObject({ id, status: "running" });
    await Promise.resolve();
    await Promise.resolve();
    expect(t.get(id)).toMatchObject({ status: "running", phase: "recording-samples", progress: { done: 1, total: 2 } });
    // The phase change was written at once.
    expect(stored(id)).toMatchObject({ phase: "recording-samples" });
    release();
    await settle();
    const done = t.get(id);
    expect(done).toMatchObject({ status: "succeeded", phase: "packing", result: { ok: true } });
    expect(done.endedAt).toBe(new Date(5100).toISOString());
    expect(buildView(stored(id)!)).toEqual(done);

    const failing = t.start(async () => {
      throw new EdgeFleetError("MODEL_LOAD_FAILED", "not onnx");
    });
    await settle();
    expect(t.get(failing.id)).toMatchObject({
      status: "failed",
      error: { code: "MODEL_LOAD_FAILED", message: "not onnx" },
    });
    const crashing = t.start(async () => {
      throw new Error("boom");
    });
    await settle();
    expect(t.get(crashing.id).error).toEqual({ code: "INTERNAL", message: "internal error while building the model" });
    expect(() => t.get("nope")).toThrow(/not found.*kept 30 days, at most 200/);
  });

  it("a new tracker on the same database answers finished builds and fails the ones left running", async () => {
    const clock = createFakeClock(1000);
    const first = tracker(clock);
    const finished = first.start(async (p) => {
      p("inspecting");
      return { name: "m" };
    });
    await settle();
    const before = first.get(finished.id);
    expect(before.status).toBe("succeeded");
    // Never finishes: its process "dies" with it.
    const stuck = first.start(
      (p) => {
        p("quantizing", 4, 10);
        return new Promise(() => {});
      },
      { name: "m", version: "2.0.0" },
    );
    await settle();

    clock.advance(60_000);
    const second = tracker(clock);
    expect(second.get(finished.id)).toEqual(before);
    const after = second.get(stuck.id);
    expect(after).toMatchObject({
      status: "failed",
      phase: "quantizing",
      endedAt: new Date(61_000).toISOString(),
      error: { code: "BUILD_INTERRUPTED" },
    });
    expect(after.phases.at(-1)).toMatchObject({ name: "quantizing", status: "failed" });
    expect(after.error?.message).toContain("m@2.0.0");
    expect(createBuildRepo(db).running()).toEqual([]);
  });

  it("replicas (issue 14): another replica's running build is left alone while it lives, interrupted once it is gone", async () => {
    const clock = createFakeClock(5000);
    const gone = new Set<string>();
    const replica = (owner: string) =>
      createBuildTracker({
        log,
        clock,
        repo: createBuildRepo(db),
        newId: () => `${owner}-build`,
        owner,
        ownerGone: (id) => id === null || gone.has(id),
        sweepEveryMs: 1000,
      });
    const a = replica("a");
    const running = a.start(() => new Promise(() => {}));
    const b = replica("b");
    // b started while a lives: a's build keeps running, and b reads it from the shared store.
    expect(b.get(running.id).status).toBe("running");
    clock.advance(1000);
    expect(stored(running.id)?.status).toBe("running");
    gone.add("a");
    clock.advance(1000);
    await settle();
    expect(b.get(running.id)).toMatchObject({ status: "failed", error: { code: "BUILD_INTERRUPTED" } });
    a.stop();
    b.stop();
  });

  it("throttles progress-only writes, but the live view is always current", async () => {
    const clock = createFakeClock(0);
    const t = tracker(clock, { progressPersistMs: 1000 });
    let report!: (done: number) => void;
    const b = t.start(
      (p) =>
        new Promise(() => {
          report = (done) => p("validating-int8", done, 100);
        }),
    );
    await settle();
    report(1);
    expect(stored(b.id)?.progress).toEqual({ done: 1, total: 100 }); // new phase: written
    clock.advance(400);
    report(2);
    clock.advance(400);
    report(3);
    expect(t.get(b.id).progress).toEqual({ done: 3, total: 100 });
    expect(stored(b.id)?.progress).toEqual({ done: 1, total: 100 }); // 800 ms since the last write
    clock.advance(200);
    report(4);
    expect(stored(b.id)?.progress).toEqual({ done: 4, total: 100 }); // 1000 ms: written
  });
});

describe("build retention (build-repo prune)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let db: Db;
  beforeEach(async () => {
    tmp = await makeTempDir("ef-prune-");
    db = openDatabase(tmp.path);
  });
  afterEach(async () => {
    db.close();
    await tmp.cleanup();
  });
  const DAY = 86_400_000;
  const finishedAt = (id: string, at: number): BuildState => succeedBuild(newBuild(id, at - 10), null, at);
  const ids = () => (db.prepare("SELECT id FROM model_builds ORDER BY id").all() as { id: string }[]).map((r) => r.id);

  it("keeps the newest finished builds up to the count, drops older than the age, never running ones", () => {
    const repo = createBuildRepo(db);
    const now = 100 * DAY;
    repo.save(finishedAt("a-old", now - 31 * DAY));
    repo.save(newBuild("r-running", now - 40 * DAY));
    repo.save(failBuild(newBuild("b", now - 3 * DAY), { code: "INTERNAL", message: "x" }, now - 3 * DAY));
    repo.save(finishedAt("c", now - 2 * DAY));
    repo.save(finishedAt("d", now - DAY));
    repo.save(finishedAt("e", now));

    expect(repo.prune({ maxFinished: 10, maxAgeMs: 30 * DAY }, now)).toBe(1);
    expect(ids()).toEqual(["b", "c", "d", "e", "r-running"]);
    expect(repo.prune({ maxFinished: 2, maxAgeMs: 30 * DAY }, now)).toBe(2);
    expect(ids()).toEqual(["d", "e", "r-running"]);
    expect(repo.prune({ maxFinished: 0, maxAgeMs: 30 * DAY }, now)).toBe(2);
    expect(ids()).toEqual(["r-running"]);
  });

  it("a restarted tracker prunes on start", () => {
    const repo = createBuildRepo(db);
    const now = 400 * DAY;
    for (let i = 0; i < 5; i++) repo.save(finishedAt(`f${i}`, now - i * 1000));
    repo.save(finishedAt("ancient", now - 90 * DAY));
    createBuildTracker({
      log: createLogger({ name: "prune-test", level: "silent", pretty: false }),
      clock: createFakeClock(now),
      repo,
      retention: { maxFinished: 3, maxAgeMs: 30 * DAY },
    });
    expect(ids()).toEqual(["f0", "f1", "f2"]);
  });
});
