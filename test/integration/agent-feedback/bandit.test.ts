import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSocketApi, type SocketApi } from "../../../agent/api/socket-api.js";
import { SocketClient } from "../../../agent/client/socket-client.js";
import { createFeedback } from "../../../agent/feedback/feedback-routes.js";
import { armRewards } from "../../../agent/feedback/feedback-stats.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createBanditWeights } from "../../../agent/serving/bandit.js";
import { createServingLayer, type ServingLayer } from "../../../agent/serving/serving-layer.js";
import { systemClock } from "../../../shared/clock.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { installModel, manifestFor } from "../../conformance/datatype-models.js";
import { buildTinyModel } from "../../helpers/tiny-models.js";
import { testLog, testProfile } from "../agent-runtime/fixtures.js";

/**
 * Issue 22, bandit A/B, through the real socket API, real model hosts (two versions of the tiny
 * linear model read as a 4-class classifier) and the real feedback window: labels make the
 * candidate right 95 % of the time and the control 50 %; the split, started at 50/50, must move
 * to the candidate while the control keeps its 10 % floor.
 */
const M = "ab-cls";
const argmax = (v: number[]) => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);

describe("bandit A/B through the socket API", () => {
  let dir: string;
  let runtime: AgentModelRuntime;
  let serving: ServingLayer;
  let api: SocketApi;
  let client: SocketClient;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "ef-bandit-"));
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    const manifest = (version: string) => ({
      ...manifestFor(M, "FP32", version),
      inputs: [{ name: "x", datatype: "FP32" as const, shape: [1, 4] }],
      outputs: [{ name: "y", datatype: "FP32" as const, shape: [1, 4] }],
    });
    const v1 = await runtime.load(
      await installModel(dir, M, "1.0.0", buildTinyModel("linear"), manifest("1.0.0"), "a".repeat(64)),
    );
    await runtime.activate(v1);
    const v2 = await runtime.load(
      await installModel(dir, M, "2.0.0", buildTinyModel("linear", { scale: 2 }), manifest("2.0.0"), "b".repeat(64)),
    );
    const feedback = createFeedback({ clock: systemClock });
    const bandit = createBanditWeights({
      now: () => systemClock.now(),
      random: seededRandom(11),
      // Every request sees the labels so far (the agent waits a second between recomputes).
      refreshMs: 0,
      rewards: (model) =>
        armRewards(feedback.stats.snapshot(model), runtime.serving().get(model), serving.strategy(model)),
    });
    serving = createServingLayer({ log: testLog, backend: runtime, random: seededRandom(5), bandit });
    serving.setStrategy(M, {
      mode: "ab",
      weight: 0.5,
      bandit: { minShare: 0.1 },
      candidate: { version: "2.0.0", sha256: v2.installed.sha256 },
    });
    api = createSocketApi({
      log: testLog,
      runtime,
      status: () => ({}),
      socketPath: path.join(dir, "a.sock"),
      version: "0.0.0",
      serving,
      shm: false,
      feedback,
    });
    await api.listen();
    client = new SocketClient(path.join(dir, "a.sock"));
  }, 120_000);
  afterAll(async () => {
    serving?.close();
    await api?.close();
    await runtime?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("moves the split to the more accurate candidate and keeps the control's floor", async () => {
    const rnd = seededRandom(23);
    const arms: string[] = [];
    // Before any request the split is its start weight.
    expect(serving.banditWeight(M)).toBe(0.5);
    for (let i = 0; i < 600; i++) {
      const id = `r-${i}`;
      const res = await client.infer(
        M,
        [{ name: "x", datatype: "FP32", shape: [1, 4], data: [rnd(), rnd(), rnd(), rnd()] }],
        {
          id,
        },
      );
      const arm = res.parameters?.ab_arm;
      expect(res.model_version).toBe(arm === "candidate" ? "2.0.0" : "1.0.0");
      arms.push(String(arm));
      const predicted = argmax(res.outputs[0]!.data as number[]);
      const right = rnd() < (arm === "candidate" ? 0.95 : 0.5);
      await client.json("POST", `/v2/models/${M}/feedback`, { id, label: right ? predicted : (predicted + 1) % 4 });
    }
    const share = (from: number, to: number) =>
      arms.slice(from, to).filter((a) => a === "candidate").length / (to - from);
    // The last 200 go mostly to the candidate, never all of them.
    expect(share(400, 600)).toBeGreaterThan(0.8);
    expect(share(400, 600)).toBeLessThan(1);
    expect(serving.banditWeight(M)).toBe(0.9);
    // The figures per arm, as the agent reports them.
    const stats = await client.json<{ stats: { version: string; arm: string; classification: { count: number } }[] }>(
      "GET",
      `/v2/models/${M}/feedback`,
    );
    const count = (arm: string) => stats.stats.find((s) => s.arm === arm)?.classification.count ?? 0;
    expect(count("candidate") + count("control")).toBe(600);
    expect(count("control")).toBeGreaterThan(30);
  }, 120_000);
});
