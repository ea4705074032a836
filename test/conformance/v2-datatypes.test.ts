import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tensorFromBytes } from "../../agent/api/binary-tensors.js";
import { createSocketApi, type SocketApi } from "../../agent/api/socket-api.js";
import { SocketClient } from "../../agent/client/socket-client.js";
import { type AgentModelRuntime, createModelRuntime } from "../../agent/runtime/runtime.js";
import { systemClock } from "../../shared/clock.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, rawToJson } from "../../shared/tensors.js";
import { runDirect } from "../helpers/onnx-direct.js";
import { testLog, testProfile } from "../integration/agent-runtime/fixtures.js";
import { ADDABLE, DATATYPES, datatypeModel, installModel, manifestFor, sampleInput } from "./datatype-models.js";

/**
 * Conformance, per datatype: the agent's answers over the Unix socket (JSON and binary extension)
 * equal onnxruntime-node's in-process answers for the same model and input.
 */
let root: string;
let runtime: AgentModelRuntime;
let api: SocketApi;
let client: SocketClient;
const modelPaths = new Map<string, string>();
const name = (dt: string) => `t-${dt.toLowerCase()}`;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "ef-conf-"));
  runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
  // Several models side by side, each in its own host (loaded two at a time: 2 cores).
  for (let i = 0; i < DATATYPES.length; i += 2) {
    await Promise.all(
      DATATYPES.slice(i, i + 2).map(async (dt) => {
        const inst = await installModel(root, name(dt), "1.0.0", datatypeModel(dt), manifestFor(name(dt), dt));
        modelPaths.set(dt, path.join(inst.dir, "model.onnx"));
        await runtime.activate(await runtime.load(inst));
      }),
    );
  }
  api = createSocketApi({
    log: testLog,
    runtime,
    status: () => ({}),
    socketPath: path.join(root, "agent.sock"),
    version: "0.0.0-test",
  });
  await api.listen();
  client = new SocketClient(path.join(root, "agent.sock"));
}, 300_000);

afterAll(async () => {
  await api?.close();
  await runtime?.close();
  await rm(root, { recursive: true, force: true });
});

/** Same values whatever the transport (BOOL may come back as 0/1 from typed arrays). */
const norm = (t: JsonTensor) => ({ ...t, data: t.data.map((v) => (typeof v === "boolean" ? Number(v) : v)) });

describe.each(DATATYPES)("datatype %s", (dt) => {
  const outputs = ADDABLE.has(dt) ? ["y", "z"] : ["y"];

  it("JSON infer equals in-process onnxruntime-node", async () => {
    const x = sampleInput(dt);
    const expected = await runDirect(modelPaths.get(dt)!, { x });
    const res = await client.infer(name(dt), [{ name: "x", ...x }], { id: `json-${dt}` });
    expect(res.id).toBe(`json-${dt}`);
    expect(res.model_name).toBe(name(dt));
    expect(res.model_version).toBe("1.0.0");
    expect(res.outputs.map((o) => o.name).sort()).toEqual(outputs);
    for (const o of res.outputs) {
      expect(o.datatype).toBe(dt);
      expect(o.shape).toEqual([2, 3]);
      expect(norm({ datatype: dt, shape: o.shape, data: o.data as JsonTensor["data"] })).toEqual(
        norm(expected[o.name]!),
      );
    }
  });

  it("binary extension infer equals in-process onnxruntime-node", async () => {
    const x = sampleInput(dt);
    const expected = await runDirect(modelPaths.get(dt)!, { x });
    const res = await client.inferBinary(name(dt), { x: jsonToRaw("x", x) }, { version: "1.0.0" });
    expect(Object.keys(res.outputs).sort()).toEqual(outputs);
    for (const [n, t] of Object.entries(res.outputs)) expect(norm(rawToJson(t))).toEqual(norm(expected[n]!));
  });

  it("requested-output filtering, JSON input with a binary output", async () => {
    const x = sampleInput(dt);
    const wanted = outputs.at(-1)!;
    const expected = await runDirect(modelPaths.get(dt)!, { x });
    const body = {
      inputs: [{ name: "x", ...x }],
      outputs: [{ name: wanted, parameters: { binary_data: true } }],
    };
    const raw = await client.raw("POST", `/v2/models/${name(dt)}/versions/1.0.0/infer`, JSON.stringify(body), {
      "content-type": "application/json",
    });
    expect(raw.status).toBe(200);
    const hl = Number(raw.headers["inference-header-content-length"]);
    const header = JSON.parse(raw.body.subarray(0, hl).toString("utf8"));
    expect(header.outputs).toHaveLength(1);
    expect(header.outputs[0].name).toBe(wanted);
    expect(header.outputs[0].parameters.binary_data_size).toBe(raw.body.length - hl);
    const t = tensorFromBytes(wanted, dt, header.outputs[0].shape, raw.body.subarray(hl));
    expect(norm(rawToJson(t))).toEqual(norm(expected[wanted]!));
  });
});
