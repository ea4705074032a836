import { readdir, readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedCpus, BACKGROUND_NICE, backgroundPlacement } from "../../../agent/runtime/host-placement.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { systemClock } from "../../../shared/clock.js";
import { sileroInputs, type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";

const SCHED_OTHER = 0;
const SCHED_IDLE = 5;

/** What the kernel says about every thread of `pid`: allowed CPUs, nice value, scheduling policy. */
async function threads(pid: number): Promise<{ cpus: string; nice: number; policy: number }[]> {
  const out: { cpus: string; nice: number; policy: number }[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, "utf8");
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.push({
      cpus: /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1] ?? "?",
      nice: Number(fields[16]), // field 19 of proc(5) stat
      policy: Number(fields[38]), // field 41
    });
  }
  return out;
}

async function until<T>(what: string, fn: () => T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(process.platform !== "linux")("background (shadow) model host placement, real hosts", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let own: number[];
  let serving: LoadedVersion;
  let shadow: LoadedVersion;

  // Both hosts belong to the file, not to its first test: each test runs alone too (issue 23).
  beforeAll(async () => {
    models = await tempModels();
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    own = await allowedCpus();
    serving = await runtime.load(await models.install("1.0.0"));
    await runtime.activate(serving);
    shadow = await runtime.load(await models.install("2.0.0"), { background: true });
  });
  afterAll(async () => {
    await runtime?.close();
    await models?.cleanup();
  });

  it("every thread of a background host runs on one CPU in the idle class; a serving host is untouched", async () => {
    expect(shadow.background).toBe(true);
    expect(serving.background).toBe(false);

    const expected = backgroundPlacement(own);
    const cpus = expected.cpus ? expected.cpus.join(",") : own.join(",");
    const bg = await threads(runtime.hostPid(shadow));
    expect(bg.length).toBeGreaterThan(1); // node's own threads too, not just the main one
    for (const t of bg) expect(t).toEqual({ cpus, nice: BACKGROUND_NICE, policy: SCHED_IDLE });

    const fg = await threads(runtime.hostPid(serving));
    const ownCpus = /^Cpus_allowed_list:\s*(.+)$/m.exec(await readFile("/proc/self/status", "utf8"))?.[1];
    for (const t of fg) expect(t.cpus).toBe(ownCpus);
    expect(fg.every((t) => t.nice !== BACKGROUND_NICE && t.policy === SCHED_OTHER)).toBe(true);

    // Read from /proc by the agent, without waking the host: node + onnxruntime are well over 10 MiB.
    expect(await shadow.rss()).toBeGreaterThan(10 * 1024 * 1024);

    // Same model, same answers: the placement changes where it runs, not what it computes.
    for (const seed of [1, 2]) {
      const a = await runtime.infer({ model: "vad", inputs: sileroInputs(seed) });
      const b = await runtime.infer({ model: "vad", version: "2.0.0", inputs: sileroInputs(seed) });
      expect(b.outputs).toEqual(a.outputs);
    }
  });

  it("a crashed background host is restarted with the same placement", async () => {
    const before = runtime.hostPid(shadow);
    process.kill(before, "SIGKILL");
    const after = await until("the restarted host", () => {
      const pid = runtime.hostPid(shadow);
      return pid !== before && runtime.stateOf(shadow) === "loaded" ? pid : undefined;
    });
    // The supervisor re-applies the placement before the version counts as loaded again.
    const expected = backgroundPlacement(own);
    const want = expected.cpus ? expected.cpus.join(",") : own.join(",");
    const ts = await threads(after);
    for (const t of ts) expect(t).toEqual({ cpus: want, nice: BACKGROUND_NICE, policy: SCHED_IDLE });
    const res = await runtime.infer({ model: "vad", version: "2.0.0", inputs: sileroInputs(3) });
    expect(res.version).toBe("2.0.0");
  });
});
