import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { decodeModel, encodeModel } from "../../../fleet-server/quantize/onnx-model.js";
import { sileroModelPath, sileroSamples } from "../../../scripts/demo/silero.js";
import { createLogger } from "../../../shared/logger.js";
import { buildModel, mlpModel, node, valueInfo } from "../../helpers/onnx-builder.js";

let dir: string;
let server: FleetServer;

// biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${server.adminToken}` };
  let payload: RequestInit["body"];
  if (body instanceof Uint8Array) {
    headers["content-type"] = "application/octet-stream";
    payload = body;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(`${server.httpUrl}${path}`, { method, headers, body: payload });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function upload(bytes: Uint8Array): Promise<string> {
  const r = await api("POST", "/v1/uploads", bytes);
  expect(r.status).toBe(201);
  return r.body.sha256;
}

const bundleFiles = () => readdirSync(join(dir, "bundles")).length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "quantize-server-it-"));
  server = await startFleetServer({
    dataDir: dir,
    httpPort: 0,
    mqttPort: 0,
    log: createLogger({ name: "quantize-it", level: "silent", pretty: false }),
  });
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("POST /v1/models with quantize=int8 (real fleet server, Silero VAD)", () => {
  it("builds fp32 and a validated, published int8 variant and shows the report", async () => {
    const sha = await upload(new Uint8Array(readFileSync(sileroModelPath("v5"))));
    const r = await api("POST", "/v1/models", {
      name: "vad",
      version: "1.0.0",
      upload: sha,
      samples: sileroSamples(),
      quantize: "int8",
      calibration: sileroSamples().map((s) => ({ inputs: s.inputs })),
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.variants.map((v: { variant: string }) => v.variant)).toEqual(["fp32", "int8"]);
    const [fp32, int8] = r.body.variants;
    expect(fp32).toMatchObject({ published: true, validation: null, releaseCounter: 1 });
    // Variants of one version share its release counter (fleet-server/registry/model-service.ts).
    expect(int8).toMatchObject({ published: true, releaseCounter: 1 });
    expect(int8.validation).toMatchObject({ passed: true, samples: 3, calibrationInputs: 3, failures: [] });
    expect(int8.bundle.size / fp32.bundle.size).toBeLessThanOrEqual(0.35);
    const got = await api("GET", "/v1/models/vad/versions/1.0.0");
    expect(got.body.variants[1].validation.outputs.map((o: { output: string }) => o.output)).toEqual([
      "output",
      "stateN",
    ]);
    expect(got.body.variants[1].quantization.nodes.length).toBeGreaterThan(10);
    expect((await api("POST", "/v1/devices", { id: "dev-q" })).status).toBe(201);
    const rollout = await api("POST", "/v1/rollouts", {
      model: "vad",
      version: "1.0.0",
      variant: "int8",
      target: { deviceIds: ["dev-q"] },
    });
    expect(rollout.status, JSON.stringify(rollout.body)).toBe(201);
  });

  it("stores but does not publish an int8 variant that fails the policy", async () => {
    const sha = await upload(new Uint8Array(readFileSync(sileroModelPath("v5"))));
    const r = await api("POST", "/v1/models", {
      name: "vad",
      version: "1.1.0",
      upload: sha,
      samples: sileroSamples(),
      quantize: "int8",
      accuracyPolicy: { maxAbsError: 0, maxRelError: 0 },
    });
    expect(r.status).toBe(201);
    const int8 = r.body.variants[1];
    expect(int8.published).toBe(false);
    const got = await api("GET", "/v1/models/vad/versions/1.1.0");
    expect(got.body.variants.map((v: { published: boolean }) => v.published)).toEqual([true, false]);
    // Stored for inspection: the bundle exists and its signed manifest carries the failed report.
    expect(got.body.variants[1].bundle.size).toBeGreaterThan(0);
    expect(got.body.variants[1].quantization.validation.passed).toBe(false);
  });

  it("quantize none keeps the single fp32 bundle; a model with nothing to quantize says why", async () => {
    const tiny = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 4])],
      outputs: [valueInfo("y", [1, 4])],
      nodes: [node("Relu", ["x"], ["y"])],
    });
    const sha = await upload(tiny);
    const samples = [{ inputs: { x: { datatype: "FP32", shape: [1, 4], data: [1, -1, 2, -2] } } }];
    const plain = await api("POST", "/v1/models", {
      name: "relu",
      version: "1.0.0",
      upload: sha,
      samples,
      quantize: "none",
    });
    expect(plain.body.variants).toHaveLength(1);
    const q = await api("POST", "/v1/models", {
      name: "relu",
      version: "1.1.0",
      upload: sha,
      samples,
      quantize: "int8",
    });
    expect(q.status).toBe(201);
    expect(q.body.variants[1]).toMatchObject({ variant: "int8", bundle: null, published: false });
    expect(q.body.variants[1].reason).toContain("no weight qualified");
  });

  it("refuses bad uploads precisely and stores nothing", async () => {
    const before = bundleFiles();
    const mlp = mlpModel();
    const mlpSamples = [{ inputs: { x: { datatype: "FP32", shape: [1, 64], data: new Array(64).fill(0.1) } } }];
    const ext = decodeModel(mlp);
    ext.graph!.initializer![0] = {
      name: "W1",
      dims: [64, 256],
      dataType: 1,
      dataLocation: 1,
      externalData: [{ key: "location", value: "../../etc/w.bin" }],
    };
    const broken = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 4])],
      outputs: [valueInfo("y", [1, 4])],
      nodes: [node("NoSuchOp", ["x"], ["y"])],
    });
    const cases: [string, Uint8Array, unknown[], string, RegExp][] = [
      [
        "junk",
        new Uint8Array(Buffer.from("definitely not onnx")),
        mlpSamples,
        "MODEL_LOAD_FAILED",
        /not an ONNX model/,
      ],
      ["cut", mlp.subarray(0, mlp.length - 5000), mlpSamples, "MODEL_LOAD_FAILED", /truncated/],
      ["ext", encodeModel(ext), mlpSamples, "MODEL_LOAD_FAILED", /W1 references external data/],
      ["broken", broken, mlpSamples, "MODEL_LOAD_FAILED", /onnxruntime cannot load/],
      [
        "mismatch",
        mlp,
        [{ inputs: { input: mlpSamples[0]!.inputs.x } }],
        "VALIDATION_FAILED",
        /missing x; unknown input/,
      ],
    ];
    for (const [name, bytes, samples, code, message] of cases) {
      const sha = await upload(bytes);
      const r = await api("POST", "/v1/models", { name, version: "1.0.0", upload: sha, samples, quantize: "int8" });
      expect(r.body.error?.code, name).toBe(code);
      expect(r.body.error.message, name).toMatch(message);
    }
    const badCalibration = await api("POST", "/v1/models", {
      name: "mlp",
      version: "1.0.0",
      upload: await upload(mlp),
      samples: mlpSamples,
      quantize: "int8",
      calibration: [{ inputs: { x: { datatype: "FP32", shape: [1, 3], data: [1, 2, 3] } } }],
    });
    expect(badCalibration.body.error.code).toBe("VALIDATION_FAILED");
    const names = (await api("GET", "/v1/models")).body.models.map((m: { name: string }) => m.name);
    expect(names).not.toEqual(expect.arrayContaining(["junk", "cut", "ext", "broken", "mismatch", "mlp"]));
    expect(names.some((n: string) => ["junk", "cut", "ext", "broken", "mismatch", "mlp"].includes(n))).toBe(false);
    expect(bundleFiles()).toBe(before);
  });
});
