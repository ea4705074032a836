import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { BUILD_PHASES, type BuildView } from "../../../fleet-server/registry/build-tracker.js";
import { sileroModelPath, sileroSamples } from "../../../scripts/demo/silero.js";
import { createLogger } from "../../../shared/logger.js";

let dir: string;
let server: FleetServer;

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${server.adminToken}`, ...headers } };
  if (body instanceof Uint8Array) {
    init.body = body;
    (init.headers as Record<string, string>)["content-type"] = "application/octet-stream";
  } else if (typeof body === "string") {
    init.body = body;
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const res = await fetch(`${server.httpUrl}${path}`, init);
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field below
  const json: any = text ? JSON.parse(text) : null;
  return { status: res.status, body: json, headers: res.headers };
}

/** Polls a build until it ends, keeping every snapshot seen. */
async function pollBuild(id: string): Promise<BuildView[]> {
  const seen: BuildView[] = [];
  for (let i = 0; i < 3000; i++) {
    const r = await api("GET", `/v1/model-builds/${id}`);
    expect(r.status).toBe(200);
    seen.push(r.body as BuildView);
    if (r.body.status !== "running") return seen;
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
    log: createLogger({ name: "model-builds-test", level: "silent", pretty: false }),
  });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("model builds (POST /v1/models?async=1)", () => {
  it("tracks phases and progress of a Silero build; the result is what a sync creation returns", async () => {
    const up = await api("POST", "/v1/uploads", new Uint8Array(readFileSync(sileroModelPath())));
    expect(up.status).toBe(201);
    const body = { name: "vad", upload: up.body.sha256, samples: sileroSamples() };

    const started = await api("POST", "/v1/models?async=1", { ...body, version: "1.0.0" });
    expect(started.status).toBe(202);
    expect(started.body).toEqual({
      buildId: expect.any(String),
      status: "running",
      links: { self: `/v1/model-builds/${started.body.buildId}` },
    });
    const seen = await pollBuild(started.body.buildId);
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

    const result = final.result as {
      name: string;
      version: string;
      variants: { variant: string; published: boolean }[];
    };
    expect(result.name).toBe("vad");
    expect(result.version).toBe("1.0.0");
    expect(result.variants.map((v) => v.variant)).toEqual(["fp32", "int8"]);
    const stored = await api("GET", "/v1/models/vad/versions/1.0.0");
    expect(stored.body).toEqual(result);

    const sync = await api("POST", "/v1/models", { ...body, version: "1.0.1" });
    expect(sync.status).toBe(201);
    expect(shape(result)).toEqual(shape(sync.body));

    // The Prefer header asks for the same thing.
    const preferred = await api("POST", "/v1/models", { ...body, version: "1.0.2" }, { prefer: "respond-async" });
    expect(preferred.status).toBe(202);
    expect((await pollBuild(preferred.body.buildId)).at(-1)!.status).toBe("succeeded");
    // An existing version is refused at once, not as a failed build.
    const again = await api("POST", "/v1/models?async=1", { ...body, version: "1.0.0" });
    expect(again.status).toBe(409);
  });

  it("a non-ONNX upload ends failed with MODEL_LOAD_FAILED; bad input is refused at once", async () => {
    const up = await api("POST", "/v1/uploads", new TextEncoder().encode("this is not an onnx model, just text"));
    expect(up.status).toBe(201);
    const started = await api("POST", "/v1/models?async=1", {
      name: "junk",
      version: "1.0.0",
      upload: up.body.sha256,
      samples: sileroSamples(),
    });
    expect(started.status).toBe(202);
    const final = (await pollBuild(started.body.buildId)).at(-1)!;
    expect(final.status).toBe("failed");
    expect(final.error?.code).toBe("MODEL_LOAD_FAILED");
    expect(final.result).toBeUndefined();
    expect(final.phases.at(-1)).toMatchObject({ name: "inspecting", status: "failed" });
    expect((await api("GET", "/v1/models/junk")).status).toBe(404);

    const badJson = await api("POST", "/v1/models?async=1", "{ not json");
    expect(badJson.status).toBe(400);
    const badBody = await api("POST", "/v1/models?async=1", { name: "junk", version: "1.0.0" });
    expect(badBody.status).toBe(400);
    expect(badBody.body.error.code).toBe("VALIDATION_FAILED");
  });

  it("an unknown build id is 404", async () => {
    const r = await api("GET", "/v1/model-builds/00000000-0000-4000-8000-000000000000");
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("NOT_FOUND");
  });
});
