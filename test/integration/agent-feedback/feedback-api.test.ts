import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSocketApi, type SocketApi } from "../../../agent/api/socket-api.js";
import { registerFeedbackMetrics } from "../../../agent/feedback/feedback-metrics.js";
import {
  type ConceptDrift,
  conceptDriftEvent,
  createFeedback,
  type Feedback,
} from "../../../agent/feedback/feedback-routes.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createFakeClock, systemClock } from "../../../shared/clock.js";
import { DeviceEventSchema } from "../../../shared/schemas/device-state.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { installModel, manifestFor } from "../../conformance/datatype-models.js";
import { buildTinyModel } from "../../helpers/tiny-models.js";
import { testLog, testProfile } from "../agent-runtime/fixtures.js";

/**
 * Issue 22, feedback on the socket: real socket API, real runtime and model host, the tiny linear
 * model (y = x + b, b = [0.5, -0.25, 0.125, 1]) read as a 4-class classifier. Ground truth comes
 * later with the request's id; the agent's accuracy must equal the one computed here by hand.
 */
const B = [0.5, -0.25, 0.125, 1];
const argmax = (v: number[]) => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);

describe("feedback API", () => {
  let dir: string;
  let runtime: AgentModelRuntime;
  let api: SocketApi;
  const clock = createFakeClock(Date.parse("2026-01-01T00:00:00Z"));
  const drifts: ConceptDrift[] = [];
  let fb: Feedback;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "ef-feedback-"));
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    const manifest = {
      ...manifestFor("cls", "FP32"),
      inputs: [{ name: "x", datatype: "FP32" as const, shape: [1, 4] }],
      outputs: [{ name: "y", datatype: "FP32" as const, shape: [1, 4] }],
    };
    const v = await runtime.load(await installModel(dir, "cls", "1.0.0", buildTinyModel("linear"), manifest));
    await runtime.activate(v);
    fb = createFeedback({
      clock,
      config: { capacity: 1000, horizonMs: 600_000 },
      onConceptDrift: (d) => drifts.push(d),
    });
    api = createSocketApi({
      log: testLog,
      runtime,
      status: () => ({}),
      socketPath: path.join(dir, "agent.sock"),
      version: "test",
      shm: false,
      feedback: fb,
    });
    await api.server.ready();
  }, 60_000);
  afterAll(async () => {
    await api?.close();
    await runtime?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const infer = async (id: string, x: number[]) => {
    const res = await api.server.inject({
      method: "POST",
      url: "/v2/models/cls/infer",
      payload: { id, inputs: [{ name: "x", datatype: "FP32", shape: [1, 4], data: x }] },
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { id: string; outputs: { data: number[] }[] };
  };
  const feedback = (body: unknown) =>
    api.server.inject({ method: "POST", url: "/v2/models/cls/feedback", payload: body as object });

  it("joins a seeded labelled stream exactly: accuracy and confusion as counted by hand", async () => {
    const rnd = seededRandom(7);
    const truths: { id: string; label: number }[] = [];
    let correct = 0;
    for (let i = 0; i < 60; i++) {
      const x = [rnd() * 2, rnd() * 2, rnd() * 2, rnd() * 2];
      const predicted = argmax(x.map((v, k) => Math.fround(v) + B[k]!));
      const res = await infer(`req-${i}`, x);
      expect(argmax(res.outputs[0]!.data)).toBe(predicted);
      const label = rnd() < 0.7 ? predicted : Math.floor(rnd() * 4);
      if (label === predicted) correct++;
      truths.push({ id: `req-${i}`, label });
    }
    // One single, then the rest as a batch.
    const one = await feedback(truths[0]);
    expect(one.statusCode).toBe(200);
    const batch = await feedback({ feedback: truths.slice(1) });
    expect(batch.statusCode).toBe(200);
    expect(batch.json().joined).toBe(59);
    const stats = (await api.server.inject({ method: "GET", url: "/v2/models/cls/feedback" })).json() as {
      stats: { version: string; classification: { count: number; correct: number; accuracy: number } }[];
    };
    expect(stats.stats).toHaveLength(1);
    expect(stats.stats[0]).toMatchObject({ version: "1.0.0", classification: { count: 60, correct } });
    expect(stats.stats[0]!.classification.accuracy).toBe(correct / 60);
  });

  it("duplicate, unknown and late feedback get clear 4xx answers; a batch reports each", async () => {
    await infer("late-1", [1, 0, 0, 0]);
    await infer("dup-1", [0, 0, 0, 3]);
    expect((await feedback({ id: "dup-1", label: 3 })).statusCode).toBe(200);
    const dup = await feedback({ id: "dup-1", label: 3 });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().code).toBe("CONFLICT");
    const unknown = await feedback({ id: "never-asked", label: 0 });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error).toMatch(/no recent prediction of cls has id never-asked/);
    clock.advance(600_001);
    const late = await feedback({ id: "late-1", label: 0 });
    expect(late.statusCode).toBe(404);
    expect(late.json().error).toMatch(/older than the feedback horizon/);
    const bad = await feedback({ id: "x", label: -1 });
    expect(bad.statusCode).toBe(400);
    expect((await feedback({ id: "x", label: 1, target: [1] })).statusCode).toBe(400);
    await infer("b-1", [0, 2, 0, 0]);
    const mixed = await feedback({
      feedback: [
        { id: "b-1", label: 1 },
        { id: "dup-1", label: 3 },
        { id: "zzz", label: 0 },
      ],
    });
    expect(mixed.json().results.map((r: { status: string }) => r.status)).toEqual([
      "correct",
      "already-joined",
      "unknown",
    ]);
  });

  it("a version whose answers turn wrong raises one concept-drift alarm with its figures", async () => {
    const rnd = seededRandom(11);
    const before = drifts.length;
    const send = async (i: number, wrong: boolean) => {
      const x = [rnd(), rnd(), rnd(), rnd()];
      const predicted = argmax((await infer(`cd-${i}`, x)).outputs[0]!.data);
      const label = wrong ? (predicted + 1) % 4 : predicted;
      expect((await feedback({ id: `cd-${i}`, label })).statusCode).toBe(200);
    };
    for (let i = 0; i < 150; i++) await send(i, rnd() < 0.05);
    const quiet = drifts.length;
    for (let i = 150; i < 260 && drifts.length === quiet; i++) await send(i, rnd() < 0.6);
    expect(drifts.length).toBe(quiet + 1);
    expect(drifts.length - before).toBeGreaterThanOrEqual(1);
    const d = drifts.at(-1)!;
    expect(d).toMatchObject({ model: "cls", version: "1.0.0", threshold: 20 });
    expect(d.meanRecent).toBeGreaterThan(d.meanBefore);
    const stats = (await api.server.inject({ method: "GET", url: "/v2/models/cls/feedback" })).json() as {
      stats: { conceptDrift: { statistic: number } | null }[];
    };
    expect(stats.stats[0]!.conceptDrift?.statistic).toBe(d.statistic);
    // The device event the agent publishes for it is one the server's schema accepts.
    expect(DeviceEventSchema.parse(conceptDriftEvent(d, "dev-1", 5))).toMatchObject({
      type: "concept.drift",
      version: "1.0.0",
    });
    // And Prometheus sees the figures.
    const registry = new Registry();
    registerFeedbackMetrics(registry, fb);
    const text = await registry.metrics();
    expect(text).toMatch(/edgefleet_feedback_accuracy\{model="cls",version="1\.0\.0",arm=""\} 0\.\d+/);
    expect(text).toMatch(/edgefleet_concept_drift_alarms\{model="cls",version="1\.0\.0"\} [1-9]/);
  });
});
