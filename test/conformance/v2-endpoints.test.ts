import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSocketApi, type SocketApi } from "../../agent/api/socket-api.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { type AgentModelRuntime, createModelRuntime } from "../../agent/runtime/runtime.js";
import { systemClock } from "../../shared/clock.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import { buildModel, intAttr, node, valueInfo } from "../helpers/onnx-builder.js";
import { testLog, testProfile } from "../integration/agent-runtime/fixtures.js";
import { datatypeModel, installModel, manifestFor } from "./datatype-models.js";

/**
 * Every v2 endpoint, and the request shapes of the Open Inference Protocol specification's own
 * examples ("mymodel": input0 UINT32 [2,2], input1 BOOL [3]; output0, output1), sent unchanged.
 */
let root: string;
let runtime: AgentModelRuntime;
let api: SocketApi;
let client: SocketClient;

function specManifest(): Manifest {
  const m = manifestFor("mymodel", "UINT32");
  return {
    ...m,
    inputs: [
      { name: "input0", datatype: "UINT32", shape: [2, 2] },
      { name: "input1", datatype: "BOOL", shape: [3] },
    ],
    outputs: [
      { name: "output0", datatype: "FP32", shape: [2, 2] },
      { name: "output1", datatype: "BOOL", shape: [3] },
    ],
  };
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "ef-conf-ep-"));
  runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  const spec = buildModel({
    opset: 14,
    inputs: [valueInfo("input0", [2, 2], 12), valueInfo("input1", [3], 9)],
    outputs: [valueInfo("output0", [2, 2], 1), valueInfo("output1", [3], 9)],
    nodes: [node("Cast", ["input0"], ["output0"], [intAttr("to", 1)]), node("Not", ["input1"], ["output1"])],
  });
  await runtime.activate(await runtime.load(await installModel(root, "mymodel", "1", spec, specManifest())));
  const fp = manifestFor("fp", "FP32");
  await runtime.activate(await runtime.load(await installModel(root, "fp", "1.0.0", datatypeModel("FP32"), fp)));
  api = createSocketApi({
    log: testLog,
    runtime,
    status: () => ({}),
    socketPath: path.join(root, "a.sock"),
    version: "9.9.9",
  });
  await api.listen();
  client = new SocketClient(path.join(root, "a.sock"));
}, 300_000);

afterAll(async () => {
  await api?.close();
  await runtime?.close();
  await rm(root, { recursive: true, force: true });
});

describe("health and metadata endpoints", () => {
  it("GET /v2 names the server and its extensions", async () => {
    const r = await client.json<{ name: string; version: string; extensions: string[] }>("GET", "/v2");
    expect(r.version).toBe("9.9.9");
    expect(r.extensions).toEqual(expect.arrayContaining(["binary_tensor_data", "model_repository"]));
  });

  it("live and ready", async () => {
    expect(await client.json("GET", "/v2/health/live")).toEqual({ live: true });
    expect(await client.json("GET", "/v2/health/ready")).toEqual({ ready: true });
  });

  it("model metadata, unversioned and versioned", async () => {
    for (const p of ["/v2/models/mymodel", "/v2/models/mymodel/versions/1"]) {
      const m = await client.json<{ name: string; versions: string[]; platform: string; inputs: unknown[] }>("GET", p);
      expect(m.name).toBe("mymodel");
      expect(m.versions).toEqual(["1"]);
      expect(m.platform).toBe("onnxruntime_onnx");
      expect(m.inputs).toEqual([
        { name: "input0", datatype: "UINT32", shape: [2, 2] },
        { name: "input1", datatype: "BOOL", shape: [3] },
      ]);
    }
  });

  it("model ready, unversioned and versioned", async () => {
    expect(await client.json("GET", "/v2/models/mymodel/ready")).toEqual({ name: "mymodel", ready: true });
    expect(await client.json("GET", "/v2/models/mymodel/versions/1/ready")).toEqual({ name: "mymodel", ready: true });
  });

  it("GET /v2/models lists every model with its serving version", async () => {
    const r = await client.models();
    expect(r.models.map((m) => [m.name, m.serving_version]).sort()).toEqual([
      ["fp", "1.0.0"],
      ["mymodel", "1"],
    ]);
  });

  it("POST /v2/repository/index (all, and ready only)", async () => {
    const all = await client.repositoryIndex();
    expect(all).toEqual(expect.arrayContaining([{ name: "mymodel", version: "1", state: "READY", reason: "" }]));
    expect(await client.repositoryIndex(true)).toHaveLength(2);
  });
});

describe("the specification's example requests, unchanged", () => {
  it("binary extension example: binary input0/input1, output0 binary, output1 JSON", async () => {
    const header = JSON.stringify({
      model_name: "mymodel",
      inputs: [
        { name: "input0", shape: [2, 2], datatype: "UINT32", parameters: { binary_data_size: 16 } },
        { name: "input1", shape: [3], datatype: "BOOL", parameters: { binary_data_size: 3 } },
      ],
      outputs: [{ name: "output0", parameters: { binary_data: true } }, { name: "output1" }],
    });
    const input0 = Buffer.from(new Uint32Array([1, 2, 3, 4]).buffer);
    const input1 = Buffer.from([1, 0, 1]);
    const body = Buffer.concat([Buffer.from(header), input0, input1]);
    const res = await client.raw("POST", "/v2/models/mymodel/infer", body, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(Buffer.byteLength(header)),
      "content-length": String(body.length),
    });
    expect(res.status).toBe(200);
    const hl = Number(res.headers["inference-header-content-length"]);
    const h = JSON.parse(res.body.subarray(0, hl).toString("utf8"));
    expect(h.model_name).toBe("mymodel");
    expect(h.outputs[0]).toEqual({
      name: "output0",
      datatype: "FP32",
      shape: [2, 2],
      parameters: { binary_data_size: 16 },
    });
    expect(h.outputs[1]).toEqual({ name: "output1", datatype: "BOOL", shape: [3], data: [false, true, false] });
    const out0 = new Float32Array(res.body.buffer.slice(res.body.byteOffset + hl, res.body.byteOffset + hl + 16));
    expect([...out0]).toEqual([1, 2, 3, 4]);
  });

  it("JSON example with id, nested data and a requested output", async () => {
    // The spec's JSON example gives input1 shape [3] with one element; the shapes here are consistent.
    const r = await client.json<{ id: string; outputs: { name: string; data: unknown[] }[] }>(
      "POST",
      "/v2/models/mymodel/infer",
      {
        id: "42",
        inputs: [
          {
            name: "input0",
            shape: [2, 2],
            datatype: "UINT32",
            data: [
              [1, 2],
              [3, 4],
            ],
          },
          { name: "input1", shape: [3], datatype: "BOOL", data: [true, false, true] },
        ],
        outputs: [{ name: "output0" }],
      },
    );
    expect(r.id).toBe("42");
    expect(r.outputs).toEqual([{ name: "output0", datatype: "FP32", shape: [2, 2], data: [1, 2, 3, 4] }]);
  });
});

describe("errors as Triton maps them: { error } with 400 / 404 / 503", () => {
  const post = (p: string, body: unknown) =>
    client.raw("POST", p, JSON.stringify(body), { "content-type": "application/json" });
  const x = { name: "x", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] };

  it.each([
    ["unknown model", "/v2/models/nope/infer", { inputs: [x] }, 404],
    ["unknown version", "/v2/models/fp/versions/9/infer", { inputs: [x] }, 404],
    ["wrong datatype", "/v2/models/fp/infer", { inputs: [{ ...x, datatype: "INT32" }] }, 400],
    ["wrong shape", "/v2/models/fp/infer", { inputs: [{ ...x, shape: [1, 4] }] }, 400],
    ["data length", "/v2/models/fp/infer", { inputs: [{ ...x, data: [1] }] }, 400],
    ["unknown output", "/v2/models/fp/infer", { inputs: [x], outputs: [{ name: "nope" }] }, 400],
    ["unsupported extension", "/v2/models/fp/infer", { inputs: [x], parameters: { classification: 2 } }, 400],
    ["no inputs", "/v2/models/fp/infer", { inputs: [] }, 400],
  ])("%s", async (_what, p, body, status) => {
    const r = await post(p, body);
    expect(r.status).toBe(status);
    expect(typeof JSON.parse(r.body.toString("utf8")).error).toBe("string");
  });

  it("binary size that does not match the shape, and a header length past the body", async () => {
    const header = JSON.stringify({ inputs: [{ ...x, data: undefined, parameters: { binary_data_size: 8 } }] });
    const body = Buffer.concat([Buffer.from(header), Buffer.alloc(8)]);
    const bad = await client.raw("POST", "/v2/models/fp/infer", body, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(Buffer.byteLength(header)),
    });
    expect(bad.status).toBe(400);
    const past = await client.raw("POST", "/v2/models/fp/infer", body, {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(body.length + 1),
    });
    expect(past.status).toBe(400);
  });

  it("metadata of an unknown model is 404", async () => {
    expect((await client.raw("GET", "/v2/models/nope")).status).toBe(404);
  });
});
