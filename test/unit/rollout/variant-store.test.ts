import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultProfilesDir } from "../../../fleet-server/config.js";
import { MIN_MEASURED_REQUESTS } from "../../../fleet-server/rollout/choose-variant.js";
import { createVariantAssignment } from "../../../fleet-server/rollout/variant-assignment.js";
import { createVariantRecorder } from "../../../fleet-server/rollout/variant-recorder.js";
import { type Db, openDatabase } from "../../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { type BundleRow, createModelRepo } from "../../../fleet-server/store/model-repo.js";
import { createRolloutRepo, type RolloutRow } from "../../../fleet-server/store/rollout-repo.js";
import { createVariantMeasurementRepo } from "../../../fleet-server/store/variant-measurement-repo.js";
import { systemClock } from "../../../shared/clock.js";
import { createLogger } from "../../../shared/logger.js";
import { loadProfiles } from "../../../shared/profiles/load-profiles.js";
import { HealthPolicySchema } from "../../../shared/schemas/desired-state.js";
import type { SignedManifest } from "../../../shared/schemas/manifest.js";
import { AccuracyPolicySchema, type QuantizationReport } from "../../../shared/schemas/quantization-report.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import { definition, rollout } from "./fixtures.js";

/**
 * The I/O around the pure choice, on a real SQLite file with every migration applied: probation
 * reports recorded per variant, and the bundle each device is assigned by an `auto` rollout.
 */
const FP32 = "a".repeat(64);
const INT8 = "b".repeat(64);
const MIB = 1024 * 1024;
const TS = "2025-03-03T00:00:00.000Z";

/** A whole int8 report (the store decodes it with QuantizationReportSchema); only `passed` matters here. */
function int8Report(passed: boolean): QuantizationReport {
  return {
    method: "int8-weights",
    opset: 17,
    weightOnlyEncoding: "dequantize-linear-per-axis",
    options: { minElements: 256, dynamicMinElements: 4096, dynamicMatMul: true, reduceRange: true, keepFp32: [] },
    nodes: [],
    weights: [],
    totals: { weightsQuantized: 1, dynamicNodes: 1, weightOnlyNodes: 0, bytesBefore: 4096, bytesAfter: 1040 },
    validation: {
      passed,
      policy: AccuracyPolicySchema.parse({}),
      samples: 1,
      calibrationInputs: 0,
      outputs: [],
      top1Agreement: null,
      sizeRatio: 0.3,
      latency: { fp32Ms: 1, int8Ms: 1, ratio: 1, runs: 3 },
      failures: passed ? [] : ["output y: max abs error 1 > 0.05 and relative 1 > 0.1"],
    },
  };
}

function bundle(sha256: string, variant: "fp32" | "int8", opts: { published?: boolean; minMemoryMB?: number } = {}) {
  // A whole manifest: the store decodes the column with SignedManifestSchema (issue 23).
  const manifest: SignedManifest = {
    signed: {
      _type: "manifest",
      model: { name: "vad", version: "1.0.0", variant },
      releaseCounter: 1,
      createdAt: TS,
      inputs: [{ name: "x", datatype: "FP32", shape: [1, 4] }],
      outputs: [{ name: "y", datatype: "FP32", shape: [1, 2] }],
      opset: 17,
      lineage: {},
      files: [{ path: "model.onnx", size: (variant === "int8" ? 1 : 4) * MIB, sha256: "c".repeat(64) }],
      compatibility: { arch: [], minMemoryMB: opts.minMemoryMB ?? 0, executionProviders: ["cpu"] },
      quantization: variant === "int8" ? int8Report(opts.published ?? true) : null,
    },
    signatures: [],
  };
  return { sha256, size: 1000, name: "vad", version: "1.0.0", variant, releaseCounter: 1, manifest, createdAt: TS };
}

function summary(sha256: string, requests: number, p50Ms: number) {
  return {
    version: "1.0.0",
    sha256,
    requests,
    errors: 0,
    nonFinite: 0,
    p50Ms,
    p95Ms: p50Ms * 2,
    hostRestarts: 0,
    rssBytes: null,
  };
}

function reportedPayload(deviceId: string, candidate: object, baseline: object | null, profile = "generic-x64") {
  return Buffer.from(
    JSON.stringify({
      deviceId,
      agentVersion: "0.1.0",
      profile,
      arch: "x64",
      ts: TS,
      lastDesiredSeq: 1,
      models: [
        {
          model: "vad",
          state: "committed",
          committed: { version: "1.0.0", variant: "int8", sha256: INT8, releaseCounter: 1 },
          candidate: null,
          probation: { verdict: "passed", startedAt: TS, candidate, baseline },
        },
      ],
    }),
  );
}

describe("variant measurements and assignment on SQLite", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let db: Db;
  let repos: ReturnType<typeof build>;

  function build(d: Db) {
    const devices = createDeviceRepo(d);
    const models = createModelRepo(d);
    const measurements = createVariantMeasurementRepo(d);
    const log = createLogger({ name: "t", level: "silent", pretty: false });
    const recorder = createVariantRecorder({ log, clock: systemClock, devices, models, measurements });
    return { devices, models, measurements, recorder, rollouts: createRolloutRepo(d) };
  }

  beforeEach(async () => {
    tmp = await makeTempDir("ef-variants-");
    db = openDatabase(tmp.path);
    repos = build(db);
    const { devices, models } = repos;
    models.insertVersion(
      { name: "vad", version: "1.0.0", lineage: {}, samplesCount: 1, modelSha256: "c".repeat(64), createdAt: TS },
      [bundle(FP32, "fp32"), bundle(INT8, "int8")] as BundleRow[],
    );
    for (const [id, profile] of [
      ["pi", "raspberry-pi-4"],
      ["x64", "generic-x64"],
      ["odd", "no-such-profile"],
      ["none", null],
    ] as const) {
      devices.insert({ id, passwordHash: "x", tags: {}, profile, now: TS });
    }
  });

  afterEach(async () => {
    db.close();
    await tmp.cleanup();
  });

  it("records candidate and baseline per variant, keeps a usable figure, ignores strangers", () => {
    const { recorder, measurements } = repos;
    const enough = MIN_MEASURED_REQUESTS;
    recorder.onReported("x64", reportedPayload("x64", summary(INT8, enough, 2), summary(FP32, enough + 5, 3)));
    expect(measurements.forDevice("x64").map((m) => [m.model, m.variant, m.p50Ms, m.requests])).toEqual([
      ["vad", "fp32", 3, enough + 5],
      ["vad", "int8", 2, enough],
    ]);
    // A later probation of another int8 bundle that has barely started does not erase it.
    const event = {
      type: "probation.verdict",
      deviceId: "x64",
      ts: TS,
      eventSeq: 9,
      model: "vad",
      bundle: INT8,
      rolloutId: null,
      report: { verdict: "failed", startedAt: TS, candidate: summary("d".repeat(64), 3, 9), baseline: null },
    };
    recorder.onEvent("x64", Buffer.from(JSON.stringify(event)));
    expect(measurements.get("x64", "vad", "int8")).toMatchObject({ sha256: INT8, p50Ms: 2 });
    // Payloads for another device id, unknown devices and garbage change nothing and do not throw.
    recorder.onReported("pi", reportedPayload("x64", summary(INT8, 99, 1), null));
    recorder.onReported("ghost", reportedPayload("ghost", summary(INT8, 99, 1), null));
    recorder.onEvent("x64", Buffer.from("{not json"));
    expect(measurements.forDevice("pi")).toEqual([]);
  });

  it("assigns per device from the server's profiles; an explicit variant wins; members keep their bundle", async () => {
    const profiles = await loadProfiles(defaultProfilesDir());
    const { devices, models, measurements, rollouts, recorder } = repos;
    const assign = createVariantAssignment({ models, measurements, profiles });
    const row = (variant: string): RolloutRow => {
      const def = definition({ model: "vad", version: "1.0.0", variant, target: { tags: { site: "lab" } } });
      return {
        id: `r-${variant}`,
        model: "vad",
        version: "1.0.0",
        variant,
        bundleSha256: FP32,
        target: {},
        healthPolicy: HealthPolicySchema.parse({}),
        createdAt: TS,
        definition: def,
        status: "running",
        state: rollout(def).state,
      };
    };
    const pick = (id: string, variant = "auto") => {
      const p = assign.pick(row(variant), devices.get(id)!);
      return [p.variant, p.reason, p.bundle.sha256];
    };
    expect(pick("pi")).toEqual(["int8", "profile", INT8]);
    expect(pick("x64")).toEqual(["fp32", "profile", FP32]);
    expect(pick("odd")).toEqual(["fp32", "unknown-profile", FP32]);
    expect(pick("pi", "fp32")).toEqual(["fp32", "explicit", FP32]);

    // No enrolled profile: the one the agent reports counts.
    devices.setReported(
      "none",
      JSON.parse(reportedPayload("none", summary(INT8, 1, 1), null, "raspberry-pi-4").toString()),
      TS,
    );
    expect(pick("none")).toEqual(["int8", "profile", INT8]);

    // Measured on the device: int8 faster on the x64 box, so it gets int8 next time.
    recorder.onReported("x64", reportedPayload("x64", summary(INT8, 80, 1.5), summary(FP32, 80, 2.5)));
    expect(pick("x64")).toEqual(["int8", "measured-faster", INT8]);

    // The member row stores its own bundle, variant and why.
    rollouts.insert(row("auto"));
    rollouts.addDevice("r-auto", {
      deviceId: "pi",
      desiredSeq: 1,
      assignedAt: TS,
      bundleSha256: INT8,
      variant: "int8",
      variantReason: "profile",
    });
    rollouts.addDevice("r-auto", {
      deviceId: "x64",
      desiredSeq: 1,
      assignedAt: TS,
      bundleSha256: FP32,
      variant: "fp32",
      variantReason: "explicit",
    });
    const [pi, x64] = rollouts.devices("r-auto");
    expect(pi).toMatchObject({ bundleSha256: INT8, variant: "int8", variantReason: "profile" });
    expect(x64).toMatchObject({ bundleSha256: FP32, variant: "fp32", variantReason: "explicit" });
  });
});
