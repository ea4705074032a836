import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FleetServer, startFleetServer } from "../../../fleet-server/main.js";
import { decodeChunkFrame } from "../../../shared/chunk-frame.js";
import { VersionViewSchema } from "../../../shared/http/models.js";
import { createLogger } from "../../../shared/logger.js";
import { SignedDesiredStateSchema } from "../../../shared/schemas/desired-state.js";
import type { ReportedState } from "../../../shared/schemas/device-state.js";
import { ManifestSchema } from "../../../shared/schemas/manifest.js";
import type { SampleInput } from "../../../shared/schemas/tensor.js";
import { SignedRootSchema } from "../../../shared/schemas/trust.js";
import { createTopics } from "../../../shared/topics.js";
import { verifyRoleSignatures } from "../../../shared/trust/envelope.js";
import { type HttpApi, httpApi } from "../../helpers/http-api.js";
import { connectDevice, eventually, nextMessage, publish, subscribeGranted } from "./device-client.js";

type ErrBody = { error: { code: string } };

const MODEL = "node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx";
const topics = createTopics();

const vadSample: SampleInput = {
  name: "silence",
  inputs: {
    input: { datatype: "FP32", shape: [1, 512], data: Array.from({ length: 512 }, (_, i) => Math.sin(i / 8) * 0.1) },
    state: { datatype: "FP32", shape: [2, 1, 128], data: new Array(256).fill(0) },
    sr: { datatype: "INT64", shape: [], data: [16000] },
  },
};

let dir: string;
let server: FleetServer;
/** The operator API in-process, typed and checked by the HTTP contract (test/helpers/http-api.ts). */
let api: HttpApi;
const clients: MqttClient[] = [];

async function device(id: string, password: string) {
  const c = await connectDevice(server.mqttUrl, id, password);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fleet-server-it-"));
  server = await startFleetServer({
    dataDir: dir,
    httpPort: 0,
    mqttPort: 0,
    checkResponses: true,
    log: createLogger({ name: "fleet-server-test", level: "silent", pretty: false }),
  });
  api = httpApi(server.app, server.adminToken);
});

afterAll(async () => {
  for (const c of clients) c.end(true);
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `make` once, on first use; later calls get the same promise. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    p ??= make();
    return p;
  };
}

describe("fleet server end to end (embedded broker, SQLite, onnxruntime)", () => {
  // Each test takes the fixtures it needs from these, so any one of them runs alone by name
  // (issue 23): the first test to need a fixture makes it, whichever test that is.
  const enrolled = once(async () => {
    const passwords: Record<string, string> = {};
    for (const id of ["dev-a", "dev-b"]) {
      const r = await api.ok("enrollDevice", { body: { id, tags: { site: "lab" } } }, 201);
      expect(r.id).toBe(id);
      passwords[id] = r.password;
    }
    return passwords;
  });
  const model = once(async () => {
    const bytes = readFileSync(MODEL);
    const up = await api.ok("upload", { raw: { payload: bytes, contentType: "application/octet-stream" } }, 201);
    const create = { name: "vad", version: "1.0.0", upload: up.sha256, samples: [vadSample] };
    const version = VersionViewSchema.parse(await api.ok("createModel", { body: create }, 201));
    return { bytes, up, create, version, bundle: version.variants[0]!.bundle! };
  });
  const rollout = once(async () => {
    await enrolled();
    await model();
    // sequenceDrainSeconds (issue 18) rides in the device's assignment.
    const body = { model: "vad", version: "1.0.0", target: { deviceIds: ["dev-a"] }, sequenceDrainSeconds: 20 };
    return api.ok("createRollout", { body }, 201);
  });
  const deviceA = once(async () => device("dev-a", (await enrolled())["dev-a"]!));

  it("serves /healthz openly and refuses /v1 without a token", async () => {
    expect((await fetch(`${server.httpUrl}/healthz`)).status).toBe(200);
    const res = await fetch(`${server.httpUrl}/v1/devices`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrBody).error.code).toBe("UNAUTHORIZED");
  });

  it("enrolls devices", async () => {
    expect(Object.keys(await enrolled())).toEqual(["dev-a", "dev-b"]);
    expect(await api.fail("enrollDevice", { body: { id: "dev-a" } })).toMatchObject({ status: 409, code: "CONFLICT" });
    const bad = await api.fail("enrollDevice", { body: { id: "bad/id" } });
    expect(bad).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect(bad.message).toContain("body.id");
  });

  it("uploads a model and registers a version with a signed fp32 bundle", async () => {
    const { bytes, up, create, version: r } = await model();
    expect(up).toEqual({ sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length });
    // int8 is built by default (issue 5): fp32 first, then the validated int8 variant.
    expect(r.variants.map((v) => v.variant)).toEqual(["fp32", "int8"]);
    expect(r.variants[0]!.releaseCounter).toBe(1);
    const signed = ManifestSchema.parse(r.manifest!.signed);
    expect(signed.inputs.map((i) => i.name)).toEqual(["input", "state", "sr"]);
    expect(signed.opset).toBeGreaterThan(1);

    expect((await api.fail("createModel", { body: create })).status).toBe(409);
    const list = await api.ok("listModels");
    expect(list.models[0]).toMatchObject({ name: "vad", latestVersion: "1.0.0" });
    const v = await api.ok("getModelVersion", { params: { name: "vad", version: "1.0.0" } });
    expect(v.samplesCount).toBe(1);
  });

  it("registers a stateful version with its sequence spec in the signed manifest, and refuses a spec that does not fit (issue 18)", async () => {
    const { up } = await model();
    const sequence = {
      state: [
        { input: "state", output: "stateN", initial: { datatype: "FP32" as const, shape: [2, 1, 128], fill: 0 } },
      ],
      constants: [{ input: "sr", value: { datatype: "INT64" as const, shape: [], data: [16000] } }],
    };
    const body = {
      name: "vad-seq",
      version: "1.0.0",
      upload: up.sha256,
      samples: [vadSample],
      quantize: "none" as const,
      sequence,
    };
    const r = VersionViewSchema.parse(await api.ok("createModel", { body }, 201));
    expect(ManifestSchema.parse(r.manifest!.signed).sequence).toMatchObject(sequence);
    const wrong = { ...sequence, state: [{ ...sequence.state[0]!, output: "stateOut" }] };
    const refused = await api.fail("createModel", { body: { ...body, version: "1.0.1", sequence: wrong } });
    expect(refused).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    expect(refused.message).toContain('"stateOut" is not an output');
  });

  it("rejects bad model requests precisely", async () => {
    const malformed = await api.fail("createModel", { raw: { payload: "{not json", contentType: "application/json" } });
    expect(malformed).toMatchObject({ status: 400, code: "BAD_REQUEST" });
    const invalid = await api.fail("createModel", {
      body: { name: "Vad!", version: "x", upload: "abc", samples: [] },
    });
    expect(invalid).toMatchObject({ status: 400, code: "VALIDATION_FAILED" });
    const unknown = await api.fail("createModel", {
      body: { name: "vad", version: "2.0.0", upload: "0".repeat(64), samples: [vadSample] },
    });
    expect(unknown).toMatchObject({ status: 404, code: "NOT_FOUND" });
    const junk = await api.ok(
      "upload",
      { raw: { payload: Buffer.from("this is not an onnx model"), contentType: "application/octet-stream" } },
      201,
    );
    const notOnnx = await api.fail("createModel", {
      body: { name: "junk", version: "1.0.0", upload: junk.sha256, samples: [vadSample] },
    });
    expect(notOnnx).toMatchObject({ status: 422, code: "MODEL_LOAD_FAILED" });
  });

  it("rolls out: the device gets a director-signed desired state and pulls the bundle in chunks", async () => {
    const root = SignedRootSchema.parse(JSON.parse(readFileSync(server.rootJsonPath, "utf8"))).signed;
    const r = await rollout();
    const { bundle } = await model();
    expect(r.status).toBe("running");
    expect(r.counts).toMatchObject({ total: 1, pending: 1 });

    const a = await deviceA();
    const raw = await nextMessage(a, topics.device("dev-a", "desired"));
    const desired = SignedDesiredStateSchema.parse(JSON.parse(raw.toString("utf8")));
    expect(() => verifyRoleSignatures(desired, root, "director")).not.toThrow();
    expect(desired.signed.deviceId).toBe("dev-a");
    expect(desired.signed.seq).toBe(1);
    const assignment = desired.signed.assignments[0]!;
    expect(assignment.bundle).toEqual(bundle);
    expect(assignment.sequenceDrainSeconds).toBe(20);
    expect(() => verifyRoleSignatures(assignment.manifest, root, "release")).not.toThrow();

    // Pull the bundle in 256 KiB chunks; the first half, then "resume" for the rest.
    const resTopic = topics.device("dev-a", "chunks/res");
    const parts: Buffer[] = [];
    const CHUNK = 256 * 1024;
    for (let offset = 0; offset < bundle.size; offset += CHUNK) {
      const res = nextMessage(a, resTopic);
      const reqId = `r${offset}`;
      await publish(
        a,
        topics.device("dev-a", "chunks/req"),
        JSON.stringify({ bundle: bundle.sha256, offset, length: CHUNK, reqId }),
      );
      const frame = decodeChunkFrame(await res);
      expect(frame.header.reqId).toBe(reqId);
      expect(frame.header.error).toBeUndefined();
      expect(frame.header.size).toBe(bundle.size);
      parts.push(frame.bytes);
    }
    const whole = Buffer.concat(parts);
    expect(createHash("sha256").update(whole).digest("hex")).toBe(bundle.sha256);
    expect(server.stats.chunkBytesServed("dev-a")).toBe(bundle.size);

    // Offset past the end and an unassigned bundle come back as error frames.
    let res = nextMessage(a, resTopic);
    await publish(
      a,
      topics.device("dev-a", "chunks/req"),
      JSON.stringify({ bundle: bundle.sha256, offset: bundle.size, length: 10, reqId: "past" }),
    );
    let frame = decodeChunkFrame(await res);
    expect(frame.header.length).toBe(0);
    expect(frame.header.error?.code).toBe("RANGE_NOT_SATISFIABLE");
    res = nextMessage(a, resTopic);
    await publish(
      a,
      topics.device("dev-a", "chunks/req"),
      JSON.stringify({ bundle: "f".repeat(64), offset: 0, length: 10, reqId: "other" }),
    );
    frame = decodeChunkFrame(await res);
    expect(frame.header.error?.code).toBe("FORBIDDEN");
  });

  it("serves bundles over HTTP with Range", async () => {
    await rollout(); // dev-a may read its assigned bundle, dev-b may not
    const { bundle } = await model();
    const passwords = await enrolled();
    const costBefore = await api.ok("getModelCost", { params: { name: "vad" }, query: { version: "1.0.0" } });
    const full = await fetch(`${server.httpUrl}/v1/bundles/${bundle.sha256}`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(full.status).toBe(200);
    const all = Buffer.from(await full.arrayBuffer());
    expect(all.length).toBe(bundle.size);
    const part = await fetch(`${server.httpUrl}/v1/bundles/${bundle.sha256}`, {
      headers: { authorization: `Bearer ${server.adminToken}`, range: "bytes=0-99" },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 0-99/${bundle.size}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(all.subarray(0, 100));
    const sha = { sha256: bundle.sha256 };
    const beyond = await api.fail("getBundle", { params: sha, headers: { range: `bytes=${bundle.size}-` } });
    expect(beyond).toMatchObject({ status: 416, code: "RANGE_NOT_SATISFIABLE" });
    const head = await api.call("getBundle", { params: sha, method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["accept-ranges"]).toBe("bytes");
    expect((await api.call("getBundle", { params: { sha256: "0".repeat(64) } })).status).toBe(404);
    // Device basic auth: allowed for its assigned bundle, refused for another device's view of it.
    const basic = (id: string) => `Basic ${Buffer.from(`${id}:${passwords[id]}`).toString("base64")}`;
    const asA = await fetch(`${server.httpUrl}/v1/bundles/${bundle.sha256}`, {
      method: "HEAD",
      headers: { authorization: basic("dev-a") },
    });
    expect(asA.status).toBe(200);
    const asB = await fetch(`${server.httpUrl}/v1/bundles/${bundle.sha256}`, {
      method: "HEAD",
      headers: { authorization: basic("dev-b") },
    });
    expect(asB.status).toBe(403);
    // Issue 22: bytes sent over HTTP count as delivered (the whole bundle and the 100-byte range; HEADs send none).
    const costAfter = await api.ok("getModelCost", { params: { name: "vad" }, query: { version: "1.0.0" } });
    expect(costAfter.versions[0]!.bundleBytes - costBefore.versions[0]!.bundleBytes).toBe(bundle.size + 100);
  });

  it("tracks reported state and completes the rollout", async () => {
    const rolloutId = (await rollout()).id;
    const { bundle } = await model();
    const a = await deviceA();
    await publish(a, topics.device("dev-a", "presence"), "online", true);
    const reported: ReportedState = {
      deviceId: "dev-a",
      agentVersion: "0.1.0",
      profile: "generic",
      arch: "x64",
      ts: new Date().toISOString(),
      lastDesiredSeq: 1,
      models: [
        {
          model: "vad",
          state: "committed",
          committed: { version: "1.0.0", variant: "fp32", sha256: bundle.sha256, releaseCounter: 1 },
          candidate: null,
          rolloutId,
        },
      ],
    };
    await publish(a, topics.device("dev-a", "reported"), JSON.stringify(reported), true);
    const status = await eventually(async () => {
      const r = await api.ok("getRollout", { params: { id: rolloutId } });
      return r.status === "completed" ? r : undefined;
    });
    expect(status.counts).toMatchObject({ total: 1, committed: 1, failed: 0 });
    expect(status.devices[0]).toMatchObject({ deviceId: "dev-a", state: "committed" });
    const dev = await api.ok("getDevice", { params: { id: "dev-a" } });
    expect(dev.presence).toBe("online");
    expect(dev.reported?.models[0]?.state).toBe("committed");
    const list = await api.ok("listRollouts");
    expect(list.rollouts[0]).toMatchObject({ id: rolloutId, status: "completed" });
  });

  it("enforces the broker ACL", async () => {
    const passwords = await enrolled();
    const before = (await api.ok("getDevice", { params: { id: "dev-a" } })).reported;
    await expect(connectDevice(server.mqttUrl, "dev-b", "wrong-password")).rejects.toThrow();
    await expect(connectDevice(server.mqttUrl, "dev-a-impostor", passwords["dev-a"]!)).rejects.toThrow();
    const b = await device("dev-b", passwords["dev-b"]!);
    expect(await subscribeGranted(b, topics.device("dev-a", "desired"))).toBe(128);
    expect(await subscribeGranted(b, topics.allDevices("desired"))).toBe(128);
    expect(await subscribeGranted(b, "$SYS/#")).toBe(128);
    expect(await subscribeGranted(b, topics.trustRoot())).toBe(1);
    expect(await subscribeGranted(b, topics.device("dev-b", "desired"))).toBe(1);

    // dev-b forging dev-a's reported state: the broker drops it (and closes dev-b's connection).
    const forged = {
      deviceId: "dev-a",
      agentVersion: "0.1.0",
      profile: "x",
      arch: "x64",
      ts: new Date().toISOString(),
      lastDesiredSeq: 0,
      models: [],
    };
    b.publish(topics.device("dev-a", "reported"), JSON.stringify(forged), { qos: 1 });
    await new Promise<void>((resolve) => b.once("close", () => resolve()));
    const dev = await api.ok("getDevice", { params: { id: "dev-a" } });
    expect(dev.reported).toEqual(before);
  });
});

describe("limits and restarts", () => {
  it("refuses uploads over the cap with 413 and keeps rollouts and keys across a restart", async () => {
    const d = mkdtempSync(join(tmpdir(), "fleet-server-it2-"));
    const log = createLogger({ name: "fleet-server-test", level: "silent", pretty: false });
    try {
      let s = await startFleetServer({ dataDir: d, httpPort: 0, mqttPort: 0, maxUploadBytes: 1000, log });
      const auth = { authorization: `Bearer ${s.adminToken}` };
      const big = await fetch(`${s.httpUrl}/v1/uploads`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/octet-stream" },
        body: new Uint8Array(5000),
      });
      expect(big.status).toBe(413);
      expect(((await big.json()) as ErrBody).error.code).toBe("PAYLOAD_TOO_LARGE");
      const wrongType = await fetch(`${s.httpUrl}/v1/models`, {
        method: "POST",
        headers: { ...auth, "content-type": "text/plain" },
        body: "hi",
      });
      expect(wrongType.status).toBe(400);
      expect(((await wrongType.json()) as ErrBody).error.code).toBe("BAD_REQUEST");
      const enrolled = await fetch(`${s.httpUrl}/v1/devices`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ id: "keep-me", tags: { a: "b" } }),
      });
      expect(enrolled.status).toBe(201);
      const { password } = (await enrolled.json()) as { password: string };
      const token = s.adminToken;
      const root = readFileSync(s.rootJsonPath, "utf8");
      await s.close();

      s = await startFleetServer({ dataDir: d, httpPort: 0, mqttPort: 0, log });
      expect(s.adminToken).toBe(token);
      expect(readFileSync(s.rootJsonPath, "utf8")).toBe(root);
      const dev = await fetch(`${s.httpUrl}/v1/devices/keep-me`, { headers: { authorization: `Bearer ${token}` } });
      expect(((await dev.json()) as { tags: unknown }).tags).toEqual({ a: "b" });
      const c = await connectDevice(s.mqttUrl, "keep-me", password);
      c.end(true);
      await s.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
