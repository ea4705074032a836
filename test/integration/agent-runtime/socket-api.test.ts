import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSocketApi, type SocketApi } from "../../../agent/api/socket-api.js";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { systemClock } from "../../../shared/clock.js";
import { sileroInputs, type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";

interface ResBody {
  code?: string;
  error?: string;
  id?: string;
  model_name?: string;
  model_version?: string;
  outputs?: { name: string }[];
  [key: string]: unknown;
}

interface Res {
  status: number;
  body: ResBody;
  headers: Record<string, unknown>;
}

function call(socketPath: string, method: string, urlPath: string, body?: string | Buffer): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path: urlPath,
        headers:
          body !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: ResBody = { raw: text };
          try {
            parsed = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
        });
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

function v2Body(seed = 1, extra: Record<string, unknown> = {}) {
  const inputs = Object.entries(sileroInputs(seed)).map(([name, t]) => ({ name, ...t }));
  return { inputs, ...extra };
}

describe("socket API over a real Unix socket", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let api: SocketApi;
  let sock: string;
  let v1: LoadedVersion | undefined;
  /** vad 1.0.0 loaded and serving, whichever test asks first: each test runs alone by name (issue 23). */
  const serving = async () => {
    v1 ??= await runtime.load(await models.install("1.0.0"));
    if (!runtime.serving().has("vad")) await runtime.activate(v1);
  };

  beforeAll(async () => {
    models = await tempModels();
    sock = path.join(models.root, "agent.sock");
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    api = createSocketApi({
      log: testLog,
      runtime,
      socketPath: sock,
      version: "0.1.0",
      bodyLimit: 256 * 1024,
      status: () => ({ profile: runtime.profile.id, serving: [...runtime.serving().keys()] }),
    });
    await api.listen();
  });
  afterAll(async () => {
    await api?.close();
    await runtime?.close();
    await models?.cleanup();
  });

  it("serves server metadata, liveness, and a 0660 socket", async () => {
    expect((await stat(sock)).mode & 0o777).toBe(0o660);
    const root = await call(sock, "GET", "/v2");
    expect(root).toMatchObject({
      status: 200,
      body: {
        name: "edgefleet-agent",
        version: "0.1.0",
        extensions: ["binary_tensor_data", "parameters", "model_repository", "system_shared_memory"],
      },
    });
    expect((await call(sock, "GET", "/v2/health/live")).status).toBe(200);
    // Nothing loaded: live, but not ready: ready means it can serve (issue 20 §7).
    expect(await call(sock, "GET", "/v2/health/ready")).toMatchObject({
      status: 503,
      body: { code: "MODEL_NOT_READY" },
    });
  });

  it("reports not-ready while a model is loaded but not serving, ready after activation", async () => {
    const loaded = await runtime.load(await models.install("1.0.0"));
    v1 = loaded;
    const notReady = await call(sock, "GET", "/v2/health/ready");
    expect(notReady).toMatchObject({ status: 503, body: { code: "MODEL_NOT_READY" } });
    expect((await call(sock, "GET", "/v2/models/vad/ready")).status).toBe(503);
    const noServing = await call(sock, "POST", "/v2/models/vad/infer", JSON.stringify(v2Body()));
    expect(noServing).toMatchObject({ status: 503, body: { code: "MODEL_NOT_READY" } });
    expect((await call(sock, "GET", "/v2/models/vad/versions/1.0.0/ready")).status).toBe(200);

    await runtime.activate(loaded);
    expect((await call(sock, "GET", "/v2/health/ready")).status).toBe(200);
    expect(await call(sock, "GET", "/v2/models/vad/ready")).toMatchObject({
      status: 200,
      body: { name: "vad", ready: true },
    });
  });

  it("returns model and version metadata", async () => {
    await serving();
    const meta = await call(sock, "GET", "/v2/models/vad");
    expect(meta.status).toBe(200);
    expect(meta.body).toEqual({
      name: "vad",
      versions: ["1.0.0"],
      platform: "onnxruntime_onnx",
      inputs: [
        { name: "input", datatype: "FP32", shape: [1, -1] },
        { name: "state", datatype: "FP32", shape: [2, -1, 128] },
        { name: "sr", datatype: "INT64", shape: [] },
      ],
      outputs: [
        { name: "output", datatype: "FP32", shape: [-1, 1] },
        { name: "stateN", datatype: "FP32", shape: [2, -1, 128] },
      ],
      parameters: { version: "1.0.0", variant: "fp32", bundle_sha256: v1!.installed.sha256 },
    });
    expect((await call(sock, "GET", "/v2/models/vad/versions/1.0.0")).body).toEqual(meta.body);
    expect(await call(sock, "GET", "/v2/models/vad/versions/9.9.9")).toMatchObject({
      status: 404,
      body: { code: "NOT_FOUND" },
    });
    expect(await call(sock, "GET", "/v2/models/nope")).toMatchObject({ status: 404, body: { code: "NOT_FOUND" } });
    expect(await call(sock, "GET", "/v1/status")).toMatchObject({
      status: 200,
      body: { profile: "test", serving: ["vad"] },
    });
  });

  it("infers with flat and nested data, echoes the id, filters outputs", async () => {
    await serving();
    const direct = await runtime.infer({ model: "vad", inputs: sileroInputs(3) });
    const flat = await call(sock, "POST", "/v2/models/vad/infer", JSON.stringify(v2Body(3, { id: "req-1" })));
    expect(flat.status).toBe(200);
    expect(flat.body.model_name).toBe("vad");
    expect(flat.body.model_version).toBe("1.0.0");
    expect(flat.body.id).toBe("req-1");
    const byName = Object.fromEntries(flat.body.outputs!.map((o: { name: string }) => [o.name, o]));
    expect(byName.output).toEqual({ name: "output", ...direct.outputs.output });
    expect(byName.stateN).toEqual({ name: "stateN", ...direct.outputs.stateN });

    // Same request with row-major nested arrays.
    const body = v2Body(3, { outputs: [{ name: "output" }] });
    const audio = body.inputs[0]!;
    const state = body.inputs[1]!;
    const nested = {
      ...body,
      inputs: [
        { ...audio, data: [audio.data] },
        { ...state, data: [[state.data.slice(0, 128)], [state.data.slice(128)]] },
        body.inputs[2],
      ],
    };
    const res = await call(sock, "POST", "/v2/models/vad/versions/1.0.0/infer", JSON.stringify(nested));
    expect(res.status).toBe(200);
    expect(res.body.id).toBeUndefined();
    expect(res.body.outputs).toEqual([{ name: "output", ...direct.outputs.output }]);
  });

  it("answers bad requests with { error, code } and keeps serving", async () => {
    await serving();
    const post = (url: string, body: unknown) =>
      call(sock, "POST", url, typeof body === "string" ? body : JSON.stringify(body));
    const cases: [string, Res, number, string][] = [];
    cases.push(["unknown model", await post("/v2/models/nope/infer", v2Body()), 404, "NOT_FOUND"]);
    cases.push(["unknown version", await post("/v2/models/vad/versions/7.0.0/infer", v2Body()), 404, "NOT_FOUND"]);
    const renamed = v2Body();
    renamed.inputs[0]!.name = "audio";
    cases.push(["wrong tensor name", await post("/v2/models/vad/infer", renamed), 400, "INVALID_TENSOR"]);
    const reshaped = v2Body();
    reshaped.inputs[0]!.shape = [2, 256];
    cases.push(["wrong shape", await post("/v2/models/vad/infer", reshaped), 400, "INVALID_TENSOR"]);
    const shortData = v2Body();
    shortData.inputs[1]!.data = [1, 2];
    cases.push(["data/shape mismatch", await post("/v2/models/vad/infer", shortData), 400, "INVALID_TENSOR"]);
    const retyped = v2Body();
    retyped.inputs[2]!.datatype = "FP32";
    cases.push(["wrong datatype", await post("/v2/models/vad/infer", retyped), 400, "INVALID_TENSOR"]);
    const missing = v2Body();
    missing.inputs.pop();
    cases.push(["missing input", await post("/v2/models/vad/infer", missing), 400, "INVALID_TENSOR"]);
    cases.push([
      "unknown datatype",
      await post("/v2/models/vad/infer", { inputs: [{ name: "input", shape: [1], datatype: "FP128", data: [1] }] }),
      400,
      "BAD_REQUEST",
    ]);
    cases.push(["no inputs", await post("/v2/models/vad/infer", { id: "x" }), 400, "BAD_REQUEST"]);
    cases.push(["malformed JSON", await post("/v2/models/vad/infer", '{"inputs": [ {'), 400, "BAD_REQUEST"]);
    cases.push([
      "null data element",
      await post("/v2/models/vad/infer", { inputs: [{ name: "sr", shape: [1], datatype: "INT64", data: [null] }] }),
      400,
      "INVALID_TENSOR",
    ]);
    const unknownOutput = v2Body(1, { outputs: [{ name: "nope" }] });
    cases.push(["unknown output", await post("/v2/models/vad/infer", unknownOutput), 400, "INVALID_TENSOR"]);
    const huge = JSON.stringify({
      inputs: [{ name: "input", shape: [1, 100_000], datatype: "FP32", data: new Array(100_000).fill(0.123456) }],
    });
    cases.push(["body over cap", await post("/v2/models/vad/infer", huge), 413, "PAYLOAD_TOO_LARGE"]);
    cases.push(["no route", await call(sock, "GET", "/v3/whatever"), 404, "NOT_FOUND"]);

    for (const [what, res, status, code] of cases) {
      expect({ what, status: res.status, code: res.body.code }).toEqual({ what, status, code });
      expect(typeof res.body.error, what).toBe("string");
      expect(res.body.error?.length, what).toBeGreaterThan(0);
    }
    const ok = await post("/v2/models/vad/infer", v2Body());
    expect(ok.status).toBe(200);
    expect((await call(sock, "GET", "/v2/health/live")).status).toBe(200);
  });
});

describe("socket file handling", () => {
  let models: TempModels;
  beforeAll(async () => {
    models = await tempModels();
  });
  afterAll(async () => {
    await models?.cleanup();
  });

  const apiAt = (socketPath: string) =>
    createSocketApi({
      log: testLog,
      runtime: createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile }),
      socketPath,
      version: "0.1.0",
      status: () => ({}),
    });

  it("replaces a stale socket left by a killed process, refuses a live one or a regular file", async () => {
    const sock = path.join(models.root, "stale.sock");
    const child = spawn(
      process.execPath,
      ["-e", `require("net").createServer().listen(${JSON.stringify(sock)}, () => console.log("up"))`],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));

    const blocked = apiAt(sock);
    await expect(blocked.listen()).rejects.toMatchObject({ code: "CONFLICT" });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(existsSync(sock)).toBe(true);

    const api = apiAt(sock);
    await api.listen();
    expect((await call(sock, "GET", "/v2/health/live")).status).toBe(200);
    await api.close();
    expect(existsSync(sock)).toBe(false);

    const file = path.join(models.root, "not-a-socket");
    await writeFile(file, "keep me");
    await expect(apiAt(file).listen()).rejects.toMatchObject({ code: "CONFLICT" });
  });
});
