import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createSocketApi } from "../../../agent/api/socket-api.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createSequenceStore } from "../../../agent/runtime/sequence-store.js";
import { systemClock } from "../../../shared/clock.js";
import { type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";
import {
  frameBody,
  frameOf,
  installLegacy,
  installStateful,
  post,
  probability,
  type Reply,
  referenceProbabilities,
  speechLikeWave,
} from "./sequence-fixtures.js";

const INFER = "/v2/models/vad/infer";
const FRAMES = 12;

/** A runtime and its socket API with a sequence store, for one test (each test stands alone). */
async function agent(
  models: TempModels,
  name: string,
  opts: { sequenceDrainMs?: number; drainTimeoutMs?: number } = {},
) {
  const runtime: AgentModelRuntime = createModelRuntime({
    log: testLog,
    clock: systemClock,
    profile: testProfile,
    ...opts,
  });
  const sock = path.join(models.root, `${name}.sock`);
  const api = createSocketApi({
    log: testLog,
    runtime,
    socketPath: sock,
    version: "0.1.0",
    status: () => ({}),
    sequences: createSequenceStore({ runtime, clock: systemClock, log: testLog }),
  });
  await api.listen();
  const close = async () => {
    await api.close();
    await runtime.close();
  };
  return { runtime, sock, close };
}

const served = (r: Reply) => ({ p: probability(r), version: r.body.model_version });

/**
 * Issue 18 §2: a hot swap does not cut a live sequence. Silero v5 (1.0.0) is swapped for the older
 * Silero graph (2.0.0, another state altogether): a sequence can only stay right by finishing on the
 * version it started on. A state-compatible version takes the sequences over instead.
 */
describe("sequences across a hot swap", () => {
  let models: TempModels;
  beforeAll(async () => {
    models = await tempModels();
  });
  afterAll(async () => {
    await models?.cleanup();
  });

  it("lets 10 live sequences finish on the version each started on, then stops the old host", async () => {
    const { runtime, sock, close } = await agent(models, "swap");
    try {
      const v1 = await runtime.load(await installStateful(models, "1.0.0"));
      await runtime.activate(v1);
      const v2 = await runtime.load(await installLegacy(models, "2.0.0"));
      const waves = Array.from({ length: 10 }, (_, s) => speechLikeWave(300 + s, FRAMES));
      const [onV1, onV2] = await Promise.all([
        referenceProbabilities(waves.slice(0, 5)),
        referenceProbabilities(waves.slice(5), true),
      ]);
      const got: { p: number; version: string | undefined }[][] = waves.map(() => []);
      const send = async (s: number, from: number, to: number) => {
        for (let n = from; n < to; n++) {
          got[s]!.push(
            served(await post(sock, INFER, frameBody(`swap-${s}`, frameOf(waves[s]!, n), n === 0, n === FRAMES - 1))),
          );
        }
      };
      // Five sequences are half-way on 1.0.0 when the swap happens.
      await Promise.all([0, 1, 2, 3, 4].map((s) => send(s, 0, FRAMES / 2)));
      const swap = runtime.activate(v2);
      expect(runtime.serving().get("vad")).toBe(v2);
      // The old five go on while five new ones start (on 2.0.0), all at the same time.
      await Promise.all(
        [0, 1, 2, 3, 4].map((s) => send(s, FRAMES / 2, FRAMES)).concat([5, 6, 7, 8, 9].map((s) => send(s, 0, FRAMES))),
      );
      await swap;
      expect(got.slice(0, 5).map((g) => g.map((x) => x.p))).toEqual(onV1);
      expect(got.slice(5).map((g) => g.map((x) => x.p))).toEqual(onV2);
      expect(
        new Set(
          got
            .slice(0, 5)
            .flat()
            .map((x) => x.version),
        ),
      ).toEqual(new Set(["1.0.0"]));
      expect(
        new Set(
          got
            .slice(5)
            .flat()
            .map((x) => x.version),
        ),
      ).toEqual(new Set(["2.0.0"]));
      // Its last sequence ended: the replaced host goes, without waiting for the deadline.
      await vi.waitFor(() => expect(runtime.stateOf(v1)).toBe("stopped"), { timeout: 10_000 });
    } finally {
      await close();
    }
  });

  it("moves live sequences to a version whose manifest marks the state compatible", async () => {
    const { runtime, sock, close } = await agent(models, "compatible");
    try {
      const v1 = await runtime.load(await installStateful(models, "1.0.0"));
      await runtime.activate(v1);
      const v11 = await runtime.load(await installStateful(models, "1.1.0", { stateCompatibleWith: ["1.0.0"] }));
      const waves = [0, 1, 2].map((s) => speechLikeWave(400 + s, FRAMES));
      const expected = await referenceProbabilities(waves);
      // What a sequence restarted from the initial state would give for its second half: not the same.
      const restarted = await referenceProbabilities(waves.map((w) => w.subarray((FRAMES / 2) * 512)));
      expect(restarted).not.toEqual(expected.map((e) => e.slice(FRAMES / 2)));
      const got: { p: number; version: string | undefined }[][] = waves.map(() => []);
      const send = async (s: number, from: number, to: number) => {
        for (let n = from; n < to; n++) {
          got[s]!.push(
            served(await post(sock, INFER, frameBody(`move-${s}`, frameOf(waves[s]!, n), n === 0, n === FRAMES - 1))),
          );
        }
      };
      await Promise.all([0, 1, 2].map((s) => send(s, 0, FRAMES / 2)));
      // Returns at once: the sequences on 1.0.0 hold its host, and are moved at their next frame.
      await runtime.activate(v11);
      await Promise.all([0, 1, 2].map((s) => send(s, FRAMES / 2, FRAMES)));
      expect(got.map((g) => g.map((x) => x.p))).toEqual(expected);
      // The second halves ran on 1.1.0, and the old host stopped once no sequence was left on it.
      expect(new Set(got.flatMap((g) => g.slice(FRAMES / 2).map((x) => x.version)))).toEqual(new Set(["1.1.0"]));
      await vi.waitFor(() => expect(runtime.stateOf(v1)).toBe("stopped"), { timeout: 10_000 });
    } finally {
      await close();
    }
  });

  it("stops the replaced host at the sequence deadline; its sequences are then SEQUENCE_LOST", async () => {
    const { runtime, sock, close } = await agent(models, "deadline", { sequenceDrainMs: 200, drainTimeoutMs: 100 });
    try {
      const v1 = await runtime.load(await installStateful(models, "1.0.0"));
      await runtime.activate(v1);
      const wave = speechLikeWave(9, 3);
      expect((await post(sock, INFER, frameBody("late", frameOf(wave, 0), true, false))).status).toBe(200);
      const v2 = await runtime.load(await installStateful(models, "2.0.0"));
      await runtime.activate(v2);
      expect(runtime.stateOf(v1)).toBe("retiring");
      await vi.waitFor(() => expect(runtime.stateOf(v1)).toBe("stopped"), { timeout: 10_000 });
      const lost = await post(sock, INFER, frameBody("late", frameOf(wave, 1), false, false));
      expect(lost).toMatchObject({ status: 409, body: { code: "SEQUENCE_LOST" } });
      const fresh = await post(sock, INFER, frameBody("late", frameOf(wave, 0), true, true));
      expect(fresh.body.model_version).toBe("2.0.0");
    } finally {
      await close();
    }
  });

  it("takes the deadline the rollout's assignment gives the swap over the runtime's own (issue 18)", async () => {
    // The runtime's default would keep the old host up for a minute: only the swap's deadline stops it.
    const { runtime, sock, close } = await agent(models, "rollout-deadline", {
      sequenceDrainMs: 60_000,
      drainTimeoutMs: 100,
    });
    try {
      const v1 = await runtime.load(await installStateful(models, "1.0.0"));
      await runtime.activate(v1);
      const wave = speechLikeWave(10, 3);
      expect((await post(sock, INFER, frameBody("held", frameOf(wave, 0), true, false))).status).toBe(200);
      const v2 = await runtime.load(await installStateful(models, "2.0.0"));
      await runtime.activate(v2, { sequenceDrainMs: 200 });
      expect(runtime.stateOf(v1)).toBe("retiring");
      await vi.waitFor(() => expect(runtime.stateOf(v1)).toBe("stopped"), { timeout: 10_000 });
      const lost = await post(sock, INFER, frameBody("held", frameOf(wave, 1), false, false));
      expect(lost).toMatchObject({ status: 409, body: { code: "SEQUENCE_LOST" } });
    } finally {
      await close();
    }
  });
});
