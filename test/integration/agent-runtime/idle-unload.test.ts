import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createSequenceStore } from "../../../agent/runtime/sequence-store.js";
import { createFakeClock } from "../../../shared/clock.js";
import { isAlive as alive } from "../../helpers/process-alive.js";
import { sileroInputs, type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";
import { installStateful } from "./sequence-fixtures.js";

/**
 * Issue 16, low-power profiles: `idleUnloadSeconds` stops the host of a serving model nobody asked
 * for in that long, and the next request starts it again. Real model hosts and onnxruntime; only
 * time is fake, so "idle for 60 s" takes no minute.
 */
async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("idle unload (profile idleUnloadSeconds)", () => {
  let models: TempModels;
  const clock = createFakeClock(1_000_000);
  let runtime: AgentModelRuntime;
  let v: LoadedVersion;
  let reference: number[];

  beforeAll(async () => {
    models = await tempModels();
    runtime = createModelRuntime({ log: testLog, clock, profile: { ...testProfile, idleUnloadSeconds: 60 } });
    v = await runtime.load(await models.install("1.0.0"));
    await runtime.activate(v);
    reference = (await runtime.infer({ model: "vad", inputs: sileroInputs(3) })).outputs.output!.data as number[];
  }, 60_000);
  afterAll(async () => {
    await runtime?.close();
    await models?.cleanup();
  });

  it("parks a serving host idle for the configured time, stays ready, and reloads once for concurrent requests", async () => {
    const firstPid = runtime.hostPid(v);
    const reloads = runtime.idleState(v).reloads;
    clock.advance(59_000);
    expect(runtime.idleState(v).parked).toBe(false);
    clock.advance(2_000);
    expect(runtime.idleState(v).parked).toBe(true);
    await until("the idle host to exit", () => !alive(firstPid));
    // Still the serving version, still ready: only the next request's latency changes.
    expect(runtime.serving().get("vad")).toBe(v);
    expect(runtime.stateOf(v)).toBe("serving");
    expect(await v.rss()).toBe(0);

    const results = await Promise.all(
      [3, 3, 3].map((seed) => runtime.infer({ model: "vad", inputs: sileroInputs(seed) })),
    );
    for (const r of results) expect(r.outputs.output?.data).toEqual(reference);
    const after = runtime.idleState(v);
    expect(after).toMatchObject({ parked: false, reloads: reloads + 1 });
    expect(after.lastReloadMs).toBeGreaterThan(0);
    const secondPid = runtime.hostPid(v);
    expect(secondPid).not.toBe(firstPid);
    expect(alive(secondPid)).toBe(true);
  });

  it("a request arriving while the host is being parked waits for the stop and reloads", async () => {
    const pid = runtime.hostPid(v);
    const reloads = runtime.idleState(v).reloads;
    clock.advance(61_000);
    expect(runtime.idleState(v).parked).toBe(true);
    // Same tick as the park: the stop is still under way.
    const res = await runtime.infer({ model: "vad", inputs: sileroInputs(3) });
    expect(res.outputs.output?.data).toEqual(reference);
    expect(alive(pid)).toBe(false);
    expect(runtime.idleState(v)).toMatchObject({ parked: false, reloads: reloads + 1 });
  });

  it("requests keep a host loaded; an unload of a parked version leaves no host behind", async () => {
    const reloads = runtime.idleState(v).reloads;
    for (let i = 0; i < 5; i++) {
      clock.advance(30_000);
      await runtime.infer({ model: "vad", inputs: sileroInputs(1) });
    }
    expect(runtime.idleState(v)).toMatchObject({ parked: false, reloads });
    clock.advance(61_000);
    expect(runtime.idleState(v).parked).toBe(true);
    const pid = runtime.hostPid(v);
    await runtime.unload(v);
    expect(runtime.loaded()).toEqual([]);
    expect(alive(pid)).toBe(false);
  });

  it("never parks a host that holds live sequences (issue 18), and parks it once they are gone", async () => {
    const clock3 = createFakeClock(0);
    const rt = createModelRuntime({ log: testLog, clock: clock3, profile: { ...testProfile, idleUnloadSeconds: 60 } });
    try {
      const loaded = await rt.load(await models.install("3.0.0"));
      await rt.activate(loaded);
      const release = rt.holdForSequences(loaded);
      clock3.advance(120_000);
      expect(rt.idleState(loaded).parked).toBe(false);
      release();
      clock3.advance(61_000);
      expect(rt.idleState(loaded).parked).toBe(true);
    } finally {
      await rt.close();
    }
  });

  it("a sequence started on a parked host goes on after the reload (issue 18)", async () => {
    const clock4 = createFakeClock(0);
    const rt = createModelRuntime({ log: testLog, clock: clock4, profile: { ...testProfile, idleUnloadSeconds: 60 } });
    const store = createSequenceStore({ runtime: rt, clock: clock4, log: testLog });
    try {
      const loaded = await rt.load(await installStateful(models, "4.0.0"));
      await rt.activate(loaded);
      clock4.advance(61_000);
      expect(rt.idleState(loaded).parked).toBe(true);
      const input = { type: "float32" as const, dims: [1, 512], data: new Float32Array(512).fill(0.1) };
      await store.step({ model: "vad", id: "p", start: true, end: false, inputs: { input } });
      const next = await store.step({ model: "vad", id: "p", start: false, end: true, inputs: { input } });
      expect(next.outputs.output).toBeDefined();
    } finally {
      store.close();
      await rt.close();
    }
  });

  it("a profile without idleUnloadSeconds never parks", async () => {
    const clock2 = createFakeClock(0);
    const plain = createModelRuntime({ log: testLog, clock: clock2, profile: testProfile });
    try {
      const loaded = await plain.load(await models.install("2.0.0"));
      await plain.activate(loaded);
      clock2.advance(10 * 24 * 3600 * 1000);
      expect(plain.idleState(loaded).parked).toBe(false);
      expect(alive(plain.hostPid(loaded))).toBe(true);
    } finally {
      await plain.close();
    }
  });
});
