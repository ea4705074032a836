import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostExit } from "../../../agent/runtime/model-host.js";
import type { InstalledModel } from "../../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { systemClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { isAlive as alive } from "../../helpers/process-alive.js";
import { sileroInputs, type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";

describe("hot swap and host crashes", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  const exits: { installed: InstalledModel; exit: HostExit }[] = [];

  beforeAll(async () => {
    models = await tempModels();
    runtime = createModelRuntime({
      log: testLog,
      clock: systemClock,
      profile: testProfile,
      onHostExit: (installed, exit) => exits.push({ installed, exit }),
    });
  });
  afterAll(async () => {
    await runtime?.close();
    await models?.cleanup();
  });

  it("swaps versions under load with zero failed requests; each request reports the version it was routed to", async () => {
    const v1 = await runtime.load(await models.install("1.0.0"));
    await runtime.activate(v1);
    const v2 = await runtime.load(await models.install("2.0.0"));

    const TOTAL = 200;
    const CONCURRENCY = 8;
    const SWAP_AFTER = 60;
    let issued = 0;
    let swapped = false;
    let inFlightOnOldAtSwap = -1;
    let activation: Promise<void> | null = null;
    const results: { expected: string; got: string | null; error?: string }[] = [];

    async function worker(): Promise<void> {
      while (issued < TOTAL) {
        issued++;
        // The version this request must be served by: the swap is synchronous, so "issued before" = old.
        const expected = swapped ? "2.0.0" : "1.0.0";
        // Routed (and counted in flight) synchronously at the call, before the first await.
        const pending = runtime.infer({ model: "vad", inputs: sileroInputs(issued % 5), outputs: ["output"] });
        if (issued === SWAP_AFTER && !swapped) {
          // Swap while this request (at least) is still running on the old host: the drain path is
          // exercised every time, not only when the scheduler happens to interleave workers that way.
          inFlightOnOldAtSwap = runtime.inFlight(v1);
          activation = runtime.activate(v2);
          swapped = true;
        }
        try {
          const res = await pending;
          results.push({ expected, got: res.version });
        } catch (err) {
          results.push({ expected, got: null, error: String(err) });
        }
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await activation;

    expect(results).toHaveLength(TOTAL);
    expect(results.filter((r) => r.error)).toEqual([]);
    expect(results.filter((r) => r.got !== r.expected)).toEqual([]);
    expect(results.filter((r) => r.got === "1.0.0").length).toBeGreaterThanOrEqual(SWAP_AFTER);
    expect(results.filter((r) => r.got === "2.0.0").length).toBeGreaterThan(0);
    // Requests were still running on the old host when the swap happened: the drain path was exercised.
    expect(inFlightOnOldAtSwap).toBeGreaterThan(0);
    expect(runtime.stateOf(v1)).toBe("stopped");
    expect(runtime.serving().get("vad")?.installed.version).toBe("2.0.0");
    expect(runtime.loaded()).toEqual([v2]);
    // A stop we asked for is not a crash.
    expect(exits).toEqual([]);
  });

  it("a host killed with SIGKILL rejects its in-flight calls with HOST_CRASHED, and is restarted", async () => {
    const serving = runtime.serving().get("vad")!;
    const pid = runtime.hostPid(serving);
    // Enough calls that some are certainly still queued in the host when the signal lands, even if this
    // process is descheduled between sending them and the kill (a loaded CI machine).
    const calls = Array.from({ length: 200 }, (_, i) =>
      runtime.infer({ model: "vad", inputs: sileroInputs(i) }).then(
        () => "ok",
        (err: unknown) => (err instanceof EdgeFleetError ? err.code : String(err)),
      ),
    );
    process.kill(pid, "SIGKILL");
    const outcomes = await Promise.all(calls);
    expect(outcomes.every((o) => o === "ok" || o === "HOST_CRASHED")).toBe(true);
    expect(outcomes).toContain("HOST_CRASHED");

    await expect.poll(() => exits.length).toBe(1);
    expect(exits[0]?.installed.version).toBe("2.0.0");
    expect(exits[0]?.exit.signal).toBe("SIGKILL");
    expect(runtime.restarts(serving)).toBe(1);

    // The serving version is restarted (with backoff); a request routed meanwhile waits for the new host.
    const after = await runtime.infer({ model: "vad", inputs: sileroInputs(1) });
    expect(after.version).toBe("2.0.0");
    expect(runtime.stateOf(serving)).toBe("serving");
    const newPid = runtime.hostPid(serving);
    expect(newPid).not.toBe(pid);
    expect(() => process.kill(pid, 0)).toThrow(); // the old process is gone

    // Swapping away from a restarted version still works and stops its new host.
    const v3 = await runtime.load(await models.install("3.0.0"));
    await runtime.activate(v3);
    expect((await runtime.infer({ model: "vad", inputs: sileroInputs(1) })).version).toBe("3.0.0");
    expect(runtime.loaded()).toEqual([v3]);
    await expect.poll(() => alive(newPid)).toBe(false);
  });
});
