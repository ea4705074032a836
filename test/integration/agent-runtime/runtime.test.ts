import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentModelRuntime, createModelRuntime } from "../../../agent/runtime/runtime.js";
import { systemClock } from "../../../shared/clock.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { SamplesFile } from "../../../shared/schemas/tensor.js";
import { jsonToRaw } from "../../../shared/tensors.js";
import { SILERO_V5, sileroInputs, type TempModels, tempModels, testLog, testProfile } from "./fixtures.js";

describe("model runtime with a real host (silero v5)", () => {
  let models: TempModels;
  let runtime: AgentModelRuntime;
  let reference: InferenceSession;

  beforeAll(async () => {
    models = await tempModels();
    runtime = createModelRuntime({ log: testLog, clock: systemClock, profile: testProfile });
    reference = await InferenceSession.create(SILERO_V5, { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await runtime?.close();
    await reference?.release();
    await models?.cleanup();
  });

  async function referenceRun(seed: number): Promise<Record<string, number[]>> {
    const feeds: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(sileroInputs(seed))) {
      const raw = jsonToRaw(name, t);
      feeds[name] = new Tensor(raw.type, raw.data as Tensor.DataType, raw.dims);
    }
    const out = await reference.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data as Float32Array)]));
  }

  it("infers exactly what onnxruntime-node computes in-process", async () => {
    const loaded = await runtime.load(await models.install("1.0.0"));
    await runtime.activate(loaded);
    for (const seed of [1, 2, 3]) {
      const res = await runtime.infer({ model: "vad", inputs: sileroInputs(seed) });
      expect(res.version).toBe("1.0.0");
      const expected = await referenceRun(seed);
      expect(res.outputs.output?.shape).toEqual([1, 1]);
      expect(res.outputs.stateN?.shape).toEqual([2, 1, 128]);
      expect(res.outputs.output?.data).toEqual(expected.output);
      expect(res.outputs.stateN?.data).toEqual(expected.stateN);
    }
    const filtered = await runtime.infer({ model: "vad", inputs: sileroInputs(1), outputs: ["output"] });
    expect(Object.keys(filtered.outputs)).toEqual(["output"]);
    expect(await loaded.rss()).toBeGreaterThan(0);
  });

  it("rejects bad inputs before they reach the host, with precise INVALID_TENSOR errors", async () => {
    const bad = async (mutate: (i: ReturnType<typeof sileroInputs>) => void): Promise<EdgeFleetError> => {
      const inputs = sileroInputs(1);
      mutate(inputs);
      const err = await runtime.infer({ model: "vad", inputs }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EdgeFleetError);
      return err as EdgeFleetError;
    };
    const wrongName = await bad((i) => {
      i.audio = i.input!;
      delete i.input;
    });
    expect(wrongName.code).toBe("INVALID_TENSOR");
    expect(wrongName.message).toContain('unknown input "audio"');
    const wrongDim = await bad((i) => {
      i.input = { datatype: "FP32", shape: [2, 256], data: i.input!.data };
    });
    expect(wrongDim.message).toContain("dim 0 is 2, expected 1");
    const wrongType = await bad((i) => {
      i.sr = { datatype: "INT32", shape: [], data: [16000] };
    });
    expect(wrongType.message).toContain("datatype INT32, expected INT64");
    const missing = await bad((i) => {
      delete i.state;
    });
    expect(missing.message).toContain('missing input "state"');
    const short = await bad((i) => {
      i.input = { datatype: "FP32", shape: [1, 512], data: [1, 2, 3] };
    });
    expect(short.code).toBe("INVALID_TENSOR");
    const unknownModel = await runtime
      .infer({ model: "nope", inputs: sileroInputs(1) })
      .catch((e: EdgeFleetError) => e);
    expect((unknownModel as EdgeFleetError).code).toBe("NOT_FOUND");
    // Passes our checks (dims are dynamic) but ORT refuses: the STFT needs at least 2 samples. A shape the
    // model never ran: the caller's mistake (400), not a model failure (issue 20 §3).
    const ortError = await runtime
      .infer({ model: "vad", inputs: { ...sileroInputs(1), input: { datatype: "FP32", shape: [1, 1], data: [0] } } })
      .catch((e: unknown) => e);
    expect((ortError as EdgeFleetError).code).toBe("INVALID_TENSOR");
    expect((ortError as EdgeFleetError).message).toContain("Pad reflect requires axis length >= 2");
    // The host survives its own run errors.
    expect((await runtime.infer({ model: "vad", inputs: sileroInputs(1) })).version).toBe("1.0.0");
  });

  it("smoke test passes on recorded outputs and fails on perturbed ones", async () => {
    const candidate = await runtime.load(await models.install("1.1.0"));
    const recorded = await referenceRun(5);
    const samples: SamplesFile = {
      samples: [
        {
          name: "recorded",
          inputs: sileroInputs(5),
          outputs: {
            output: { datatype: "FP32", shape: [1, 1], data: recorded.output! },
            stateN: { datatype: "FP32", shape: [2, 1, 128], data: recorded.stateN! },
          },
          tolerance: { abs: 1e-5, rel: 1e-4 },
        },
      ],
    };
    const pass = await runtime.smokeTest(candidate, samples);
    expect(pass.ok).toBe(true);
    expect(pass.samples[0]?.maxAbsError).toBe(0);

    const perturbed = structuredClone(samples);
    const out = perturbed.samples[0]!.outputs.output!;
    out.data = [(out.data[0] as number) + 0.01];
    const fail = await runtime.smokeTest(candidate, perturbed);
    expect(fail.ok).toBe(false);
    expect(fail.samples[0]?.error?.code).toBe("SMOKE_TEST_FAILED");
    expect(fail.samples[0]?.maxAbsError).toBeGreaterThan(0.005);

    const nonFinite = structuredClone(samples);
    nonFinite.samples[0]!.outputs.output!.data = [Number.NaN];
    expect((await runtime.smokeTest(candidate, nonFinite)).ok).toBe(false);

    // Not serving, yet addressable by explicit version (shadow / smoke traffic).
    const explicit = await runtime.infer({ model: "vad", version: "1.1.0", inputs: sileroInputs(5) });
    expect(explicit.version).toBe("1.1.0");
    await runtime.unload(candidate);
    const gone = await runtime.infer({ model: "vad", version: "1.1.0", inputs: sileroInputs(5) }).catch((e) => e);
    expect((gone as EdgeFleetError).code).toBe("NOT_FOUND");
  });

  it("a model that cannot load fails with MODEL_LOAD_FAILED and leaves no host behind", async () => {
    const broken = await models.install("0.0.1-broken");
    const junk = Buffer.from("not an onnx model");
    await writeFile(path.join(broken.dir, "model.onnx"), junk);
    // Signed as these bytes: the model itself is bad (not a changed copy, see the next test).
    broken.manifest = {
      ...broken.manifest,
      files: [{ path: "model.onnx", size: junk.length, sha256: sha256Hex(junk) }],
    };
    const before = runtime.loaded().length;
    const err = await runtime.load(broken).catch((e: unknown) => e);
    expect((err as EdgeFleetError).code).toBe("MODEL_LOAD_FAILED");
    expect(runtime.loaded().length).toBe(before);

    const mismatched = await models.install("0.0.2-mismatch");
    mismatched.manifest = { ...mismatched.manifest, inputs: [{ name: "audio", datatype: "FP32", shape: [1, -1] }] };
    const err2 = await runtime.load(mismatched).catch((e: unknown) => e);
    expect((err2 as EdgeFleetError).code).toBe("MODEL_LOAD_FAILED");
    expect((err2 as EdgeFleetError).message).toContain("manifest inputs");
    expect(runtime.loaded().length).toBe(before);
  });

  it("a model.onnx that no longer matches its manifest is refused by the host as BUNDLE_HASH_MISMATCH, not MODEL_LOAD_FAILED", async () => {
    // The device's copy changed after verification (the bundle is fine): the updater re-makes the
    // files on this code (damaged-candidate.ts), while MODEL_LOAD_FAILED would condemn the bundle.
    const changed = await models.install("0.0.3-changed");
    const file = path.join(changed.dir, "model.onnx");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const before = runtime.loaded().length;
    const err = await runtime.load(changed).catch((e: unknown) => e);
    expect((err as EdgeFleetError).code).toBe("BUNDLE_HASH_MISMATCH");
    expect((err as EdgeFleetError).message).toMatch(/loading vad@0\.0\.3-changed: model\.onnx hashes to/);
    expect(runtime.loaded().length).toBe(before);
  });
});
