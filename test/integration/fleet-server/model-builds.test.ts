import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { BUILD_PHASES } from "../../../fleet-server/registry/build-tracker.js";
import { SYNTHETIC_SAMPLE_COUNT } from "../../../fleet-server/registry/synthetic-samples.js";
import { sileroModelPath, sileroSamples } from "../../../scripts/demo/silero.js";
import type { RequestBodyOf } from "../../../shared/http/contract.js";
import {
  BuildStartedSchema,
  type BuildViewBody,
  type modelRoutes,
  VersionViewSchema,
} from "../../../shared/http/models.js";
import { createLogger } from "../../../shared/logger.js";
import { type HttpApi, httpApi } from "../../helpers/http-api.js";
import { mlpModel } from "../../helpers/onnx-builder.js";

type CreateModelBody = RequestBodyOf<typeof modelRoutes.createModel>;
const OCTETS = "application/octet-stream";
const JSON_TYPE = "application/json";

let dir: string;
let server: FleetServer;

/** The operator API in-process, typed and checked by the HTTP contract (test/helpers/http-api.ts). */
let api: HttpApi;

/** `POST /v1/models` asking for a tracked build; returns the build id of the `202`. */
async function startBuild(body: CreateModelBody, headers?: Record<string, string>): Promise<string> {
  // `ok` parsed the 202 with its schema; the parse here only narrows the 201 | 202 union.
  const r = BuildStartedSchema.parse(
    await api.ok("createModel", { body, ...(headers ? { headers } : { query: { async: "1" } }) }, 202),
  );
  expect(r).toEqual({
    buildId: expect.any(String),
    status: "running",
    links: { self: `/v1/model-builds/${r.buildId}` },
  });
  return r.buildId;
}

/** Polls a build until it ends, keeping every snapshot seen. */
async function pollBuild(id: string): Promise<BuildViewBody[]> {
  const seen: BuildViewBody[] = [];
  for (let i = 0; i < 3000; i++) {
    const r = await api.ok("getModelBuild", { params: { id } });
    seen.push(r);
    if (r.status !== "running") return seen;
    await new Promise((res) => setTimeout(res, 5));
  }
  throw new Error(`build ${id} did not finish`);
}

/** The structure of a JSON value: keys and value types, not values. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, shape(x)]),
    );
  }
  return v === null ? "null" : typeof v;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "model-builds-it-"));
  server = await startFleetServer({
    dataDir: dir,
    httpPort: 0,
    mqttPort: 0,
    checkResponses: true,
    log: createLogger({ name: "model-builds-test", level: "silent", pretty: false }),
  });
  api = httpApi(server.app, server.adminToken);
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("model builds (POST /v1/models?async=1)", () => {
  it("tracks phases and progress of a Silero build; the result is what a sync creation returns", async () => {
    const up = await api.ok("upload", { raw: { payload: readFileSync(sileroModelPath()), contentType: OCTETS } }, 201);
    const body = { name: "vad", upload: up.sha256, samples: sileroSamples() };

    const seen = await pollBuild(await startBuild({ ...body, version: "1.0.0" }));
    const final = seen.at(-1)!;
    expect(final.status).toBe("succeeded");
    expect(final.error).toBeUndefined();

    // Every phase that applies, in order, each closed and (where counted) run to its total.
    const expected = ["inspecting", "recording-samples", "quantizing", "validating-int8", "packing", "signing"];
    expect(final.phases.map((p) => p.name)).toEqual(expected);
    for (const p of final.phases) {
      expect(p.status).toBe("succeeded");
      expect(p.endedAt).toEqual(expect.any(String));
      if (p.name === "inspecting") continue;
      expect(p.progress).not.toBeNull();
      expect(p.progress!.done).toBe(p.progress!.total);
      expect(p.progress!.total).toBeGreaterThan(0);
    }
    expect(final.phases.find((p) => p.name === "recording-samples")!.progress!.total).toBe(sileroSamples().length);
    expect(final.phases.find((p) => p.name === "validating-int8")!.progress!.total).toBe(sileroSamples().length);
    expect(final.phases.find((p) => p.name === "packing")!.progress!.total).toBe(2);

    // Across polls: the current phase never goes back, and progress never goes back within it.
    let lastIndex = -1;
    let last: { phase: string; done: number } | null = null;
    for (const s of seen) {
      if (s.phase === null) continue;
      const index = BUILD_PHASES.indexOf(s.phase);
      expect(index).toBeGreaterThanOrEqual(lastIndex);
      lastIndex = index;
      if (s.progress) {
        expect(s.progress.done).toBeLessThanOrEqual(s.progress.total);
        if (last && last.phase === s.phase) expect(s.progress.done).toBeGreaterThanOrEqual(last.done);
        last = { phase: s.phase, done: s.progress.done };
      }
    }

    const result = final.result!;
    expect(result.name).toBe("vad");
    expect(result.version).toBe("1.0.0");
    expect(result.variants.map((v) => v.variant)).toEqual(["fp32", "int8"]);
    const stored = await api.ok("getModelVersion", { params: { name: "vad", version: "1.0.0" } });
    expect(stored).toEqual(result);

    const sync = await api.ok("createModel", { body: { ...body, version: "1.0.1" } }, 201);
    expect(shape(result)).toEqual(shape(sync));

    // The Prefer header asks for the same thing.
    const preferred = await startBuild({ ...body, version: "1.0.2" }, { prefer: "respond-async" });
    expect((await pollBuild(preferred)).at(-1)!.status).toBe("succeeded");
    // An existing version is refused at once, not as a failed build.
    const again = await api.fail("createModel", { body: { ...body, version: "1.0.0" }, query: { async: "1" } });
    expect(again.status).toBe(409);
  });

  it("a non-ONNX upload ends failed with MODEL_LOAD_FAILED; bad input is refused at once", async () => {
    const text = Buffer.from("this is not an onnx model, just text");
    const up = await api.ok("upload", { raw: { payload: text, contentType: OCTETS } }, 201);
    const started = await startBuild({ name: "junk", version: "1.0.0", upload: up.sha256, samples: sileroSamples() });
    const final = (await pollBuild(started)).at(-1)!;
    expect(final.status).toBe("failed");
    expect(final.error?.code).toBe("MODEL_LOAD_FAILED");
    expect(final.result).toBeUndefined();
    expect(final.phases.at(-1)).toMatchObject({ name: "inspecting", status: "failed" });
    expect((await api.fail("getModel", { params: { name: "junk" } })).status).toBe(404);

    const async = { async: "1" } as const;
    const badJson = await api.fail("createModel", {
      query: async,
      raw: { payload: "{ not json", contentType: JSON_TYPE },
    });
    expect(badJson.status).toBe(400);
    const badBody = await api.fail("createModel", {
      query: async,
      raw: { payload: JSON.stringify({ name: "junk", version: "1.0.0" }), contentType: JSON_TYPE },
    });
    expect(badBody).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
  });

  it("an accuracy policy naming outputs the model lacks is refused with each problem (issue 23)", async () => {
    const up = await api.ok("upload", { raw: { payload: readFileSync(sileroModelPath()), contentType: OCTETS } }, 201);
    const r = await api.fail("createModel", {
      body: {
        name: "vad-policy",
        version: "1.0.0",
        upload: up.sha256,
        samples: sileroSamples(),
        accuracyPolicy: { classifierOutputs: ["outptu", "output"], outputs: { state: { ignore: true } } },
      },
    });
    expect(r).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect(r.message).toBe(
      [
        'accuracyPolicy.classifierOutputs[0]: no output "outptu" (the model\'s outputs are "output", "stateN")',
        'accuracyPolicy.classifierOutputs[1]: output "output" has shape [1,1], not [N, C] or [N, T, C] with C >= 2 classes',
        'accuracyPolicy.outputs.state: no output "state" (the model\'s outputs are "output", "stateN")',
      ].join("; "),
    );
    expect((await api.fail("getModel", { params: { name: "vad-policy" } })).status).toBe(404);
  });

  it("without samples: synthetic smoke-test inputs, fp32 published, int8 only with real inputs or the flag (issue 23)", async () => {
    const up = await api.ok("upload", { raw: { payload: Buffer.from(mlpModel()), contentType: OCTETS } }, 201);
    // `ok` checked the 201 against the contract; the parse narrows the 201 | 202 union.
    const v = VersionViewSchema.parse(
      await api.ok("createModel", { body: { name: "mlp-nosamples", version: "1.0.0", upload: up.sha256 } }, 201),
    );
    expect(v.samplesCount).toBe(SYNTHETIC_SAMPLE_COUNT);
    const fp32 = v.variants.find((x) => x.variant === "fp32")!;
    const int8 = v.variants.find((x) => x.variant === "int8")!;
    expect(fp32.published).toBe(true);
    expect(int8.published).toBe(false);
    expect(int8.validation?.failures).toContain(
      "validated on synthetic inputs only: give real --samples or --calibration, or allowSyntheticInt8 (--allow-synthetic-int8)",
    );
    // Asked for explicitly (a lenient policy, so only the flag decides here): int8 is published.
    const allowed = VersionViewSchema.parse(
      await api.ok(
        "createModel",
        {
          body: {
            name: "mlp-nosamples",
            version: "1.0.1",
            upload: up.sha256,
            allowSyntheticInt8: true,
            accuracyPolicy: { minTop1Agreement: 0, maxAbsError: 10, maxRelError: 10 },
          },
        },
        201,
      ),
    );
    expect(allowed.variants.find((x) => x.variant === "int8")?.published).toBe(true);
  });

  it("without samples, a model that cannot run on generated inputs is refused with the way out", async () => {
    const up = await api.ok("upload", { raw: { payload: readFileSync(sileroModelPath()), contentType: OCTETS } }, 201);
    const r = await api.fail("createModel", { body: { name: "vad-nosamples", version: "1.0.0", upload: up.sha256 } });
    expect(r).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect(r.message).toMatch(
      /^sample synthetic \(generated from input metadata, not real data\) #1: inference failed: /,
    );
    expect(r.message).toContain("give real samples, fleetctl models push --samples FILE");
  });

  it("an unknown build id is 404", async () => {
    const r = await api.fail("getModelBuild", { params: { id: "00000000-0000-4000-8000-000000000000" } });
    expect(r).toMatchObject({ status: 404, code: "NOT_FOUND" });
  });
});
