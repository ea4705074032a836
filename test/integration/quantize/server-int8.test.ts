import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { decodeModel, encodeModel } from "../../../fleet-server/quantize/onnx-model.js";
import { sileroModelPath, sileroSamples } from "../../../scripts/demo/silero.js";
import type { RequestBodyOf } from "../../../shared/http/contract.js";
import { type modelRoutes, type VariantView, VersionViewSchema } from "../../../shared/http/models.js";
import { createLogger } from "../../../shared/logger.js";
import type { SampleInput } from "../../../shared/schemas/tensor.js";
import { type HttpApi, httpApi } from "../../helpers/http-api.js";
import { buildModel, mlpModel, node, valueInfo } from "../../helpers/onnx-builder.js";

let dir: string;
let server: FleetServer;

/** The operator API in-process, typed and checked by the HTTP contract (test/helpers/http-api.ts). */
let api: HttpApi;

async function upload(bytes: Uint8Array): Promise<string> {
  const r = await api.ok(
    "upload",
    { raw: { payload: Buffer.from(bytes), contentType: "application/octet-stream" } },
    201,
  );
  return r.sha256;
}

/** `POST /v1/models` (synchronous): the version view of its `201`. */
async function createModel(body: RequestBodyOf<typeof modelRoutes.createModel>) {
  return VersionViewSchema.parse(await api.ok("createModel", { body }, 201));
}

const bundleFiles = () => readdirSync(join(dir, "bundles")).length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "quantize-server-it-"));
  server = await startFleetServer({
    dataDir: dir,
    httpPort: 0,
    mqttPort: 0,
    checkResponses: true,
    log: createLogger({ name: "quantize-it", level: "silent", pretty: false }),
  });
  api = httpApi(server.app, server.adminToken);
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("POST /v1/models with quantize=int8 (real fleet server, Silero VAD)", () => {
  it("builds fp32 and a validated, published int8 variant and shows the report", async () => {
    const sha = await upload(new Uint8Array(readFileSync(sileroModelPath("v5"))));
    const r = await createModel({
      name: "vad",
      version: "1.0.0",
      upload: sha,
      samples: sileroSamples(),
      quantize: "int8",
      calibration: sileroSamples().map((s) => ({ inputs: s.inputs })),
    });
    expect(r.variants.map((v) => v.variant)).toEqual(["fp32", "int8"]);
    const [fp32, int8] = r.variants as [VariantView, VariantView];
    expect(fp32).toMatchObject({ published: true, validation: null, releaseCounter: 1 });
    // Variants of one version share its release counter (fleet-server/registry/model-service.ts).
    expect(int8).toMatchObject({ published: true, releaseCounter: 1 });
    expect(int8.validation).toMatchObject({ passed: true, samples: 3, calibrationInputs: 3, failures: [] });
    expect(int8.bundle!.size / fp32.bundle!.size).toBeLessThanOrEqual(0.35);
    const got = await api.ok("getModelVersion", { params: { name: "vad", version: "1.0.0" } });
    expect(got.variants[1]!.validation!.outputs.map((o) => o.output)).toEqual(["output", "stateN"]);
    expect(got.variants[1]!.quantization!.nodes.length).toBeGreaterThan(10);
    // The report is typed by one schema (shared/schemas/quantization-report.ts): the stored manifest,
    // the HTTP answer and fleetctl read the same fields, and the validation is the one inside it.
    const q = got.variants[1]!.quantization!;
    expect(q.method).toBe("int8-weights");
    expect(q.totals.weightsQuantized).toBe(q.weights.length);
    expect(q.totals.bytesAfter).toBeLessThan(q.totals.bytesBefore);
    expect(q.validation).toEqual(got.variants[1]!.validation);
    await api.ok("enrollDevice", { body: { id: "dev-q" } }, 201);
    await api.ok(
      "createRollout",
      { body: { model: "vad", version: "1.0.0", variant: "int8", target: { deviceIds: ["dev-q"] } } },
      201,
    );
  });

  it("stores but does not publish an int8 variant that fails the policy", async () => {
    const sha = await upload(new Uint8Array(readFileSync(sileroModelPath("v5"))));
    const r = await createModel({
      name: "vad",
      version: "1.1.0",
      upload: sha,
      samples: sileroSamples(),
      quantize: "int8",
      accuracyPolicy: { maxAbsError: 0, maxRelError: 0 },
    });
    expect(r.variants[1]!.published).toBe(false);
    const got = await api.ok("getModelVersion", { params: { name: "vad", version: "1.1.0" } });
    expect(got.variants.map((v) => v.published)).toEqual([true, false]);
    // Stored for inspection: the bundle exists and its signed manifest carries the failed report.
    expect(got.variants[1]!.bundle!.size).toBeGreaterThan(0);
    expect(got.variants[1]!.quantization).toMatchObject({ validation: { passed: false } });
    expect(got.variants[1]!.validation?.passed).toBe(false);
  });

  it("quantize none keeps the single fp32 bundle; a model with nothing to quantize says why", async () => {
    const tiny = buildModel({
      opset: 13,
      inputs: [valueInfo("x", [1, 4])],
      outputs: [valueInfo("y", [1, 4])],
      nodes: [node("Relu", ["x"], ["y"])],
    });
    const sha = await upload(tiny);
    const samples: SampleInput[] = [{ inputs: { x: { datatype: "FP32", shape: [1, 4], data: [1, -1, 2, -2] } } }];
    const plain = await createModel({ name: "relu", version: "1.0.0", upload: sha, samples, quantize: "none" });
    expect(plain.variants).toHaveLength(1);
    const q = await createModel({ name: "relu", version: "1.1.0", upload: sha, samples, quantize: "int8" });
    expect(q.variants[1]).toMatchObject({ variant: "int8", bundle: null, published: false });
    expect(q.variants[1]!.reason).toContain("no weight qualified");
  });

  it("refuses bad uploads precisely and stores nothing", async () => {
    const before = bundleFiles();
    const mlp = mlpModel();
    const mlpSamples: SampleInput[] = [
      { inputs: { x: { datatype: "FP32", shape: [1, 64], data: new Array(64).fill(0.1) } } },
    ];
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
    const cases: [string, Uint8Array, SampleInput[], string, RegExp][] = [
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
        [{ inputs: { input: mlpSamples[0]!.inputs.x! } }],
        "VALIDATION_FAILED",
        /missing x; unknown input/,
      ],
    ];
    for (const [name, bytes, samples, code, message] of cases) {
      const sha = await upload(bytes);
      const r = await api.fail("createModel", {
        body: { name, version: "1.0.0", upload: sha, samples, quantize: "int8" },
      });
      expect(r.code, name).toBe(code);
      expect(r.message, name).toMatch(message);
    }
    const badCalibration = await api.fail("createModel", {
      body: {
        name: "mlp",
        version: "1.0.0",
        upload: await upload(mlp),
        samples: mlpSamples,
        quantize: "int8",
        calibration: [{ inputs: { x: { datatype: "FP32", shape: [1, 3], data: [1, 2, 3] } } }],
      },
    });
    expect(badCalibration.code).toBe("VALIDATION_FAILED");
    const names = (await api.ok("listModels")).models.map((m) => m.name);
    expect(names).not.toEqual(expect.arrayContaining(["junk", "cut", "ext", "broken", "mismatch", "mlp"]));
    expect(names.some((n) => ["junk", "cut", "ext", "broken", "mismatch", "mlp"].includes(n))).toBe(false);
    expect(bundleFiles()).toBe(before);
  });
});
