import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModelRuntime } from "../../../agent/runtime/runtime.js";
import type { AgentModelRuntime } from "../../../agent/runtime/runtime-types.js";
import { createInferenceRecorder } from "../../../agent/telemetry/inference-recorder.js";
import { openTelemetryBuffer, type TelemetryBuffer } from "../../../agent/telemetry/telemetry-buffer.js";
import { systemClock } from "../../../shared/clock.js";
import { datatypeModel, installModel, manifestFor } from "../../conformance/datatype-models.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import { testProfile } from "../agent-runtime/fixtures.js";

/**
 * Client requests on the typed-array path (binary tensor extension, dynamic batching) are telemetry
 * like JSON ones; the agent's own shadow runs (`internal`) are not counted as client requests.
 * Real runtime with a real host, real SQLite buffer.
 */
describe("telemetry of the typed-array inference path", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let runtime: AgentModelRuntime;
  let buffer: TelemetryBuffer;
  const log = pino({ level: "silent" });
  const sources: string[] = [];

  beforeAll(async () => {
    tmp = await makeTempDir("ef-raw-");
    runtime = createModelRuntime({ log, clock: systemClock, profile: testProfile });
    const installed = await installModel(tmp.path, "fp", "1.0.0", datatypeModel("FP32"), manifestFor("fp", "FP32"));
    await runtime.activate(await runtime.load(installed));
    buffer = openTelemetryBuffer({
      path: `${tmp.path}/telemetry.db`,
      durability: "full",
      caps: { maxRows: 1000, maxBytes: 1 << 20 },
      log,
    });
  });

  afterAll(async () => {
    await runtime?.close();
    buffer?.close();
    await tmp?.cleanup();
  });

  it("records binary/batched client requests as `api` and shadow runs as `internal`", async () => {
    const recorder = createInferenceRecorder({
      buffer,
      drift: { observe: () => undefined, snapshot: () => [], gauges: () => [] },
      onInference: (_r, source) => sources.push(source),
      captureRate: 0,
      random: Math.random,
    });
    const off = runtime.observe((r) => recorder.listener(r));
    const inferRaw = recorder.tapRaw((r) => runtime.inferRaw(r));
    const x = { type: "float32" as const, dims: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    const before = buffer.stats().rows;

    const res = await inferRaw({ model: "fp", inputs: { x } });
    expect(Array.from(res.outputs.y!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    await runtime.inferRaw({ model: "fp", inputs: { x }, internal: true });
    await buffer.durable();
    off();

    expect(sources).toEqual(["api", "internal"]);
    const rows = buffer.readAfter(0, 100).map((r) => JSON.parse(r.json) as { kind: string; source: string });
    expect(buffer.stats().rows - before).toBe(2);
    expect(rows.filter((r) => r.kind === "inference").map((r) => r.source)).toEqual(["api", "internal"]);
  });
});
