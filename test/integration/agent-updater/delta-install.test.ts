import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openAgentStore } from "../../../agent/store/agent-store.js";
import type { ChunkChannel } from "../../../agent/transport/chunk-channel.js";
import { installFromDelta } from "../../../agent/updater/delta-install.js";
import { canonicalJson } from "../../../shared/canonical-json.js";
import { encodeChunkFrame } from "../../../shared/chunk-frame.js";
import { systemClock } from "../../../shared/clock.js";
import { encodeDelta } from "../../../shared/delta/model-delta.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import type { ChunkRequest } from "../../../shared/schemas/chunks.js";
import { perturbFinalMatMul, withRawData } from "../../helpers/onnx-perturb.js";
import { buildTinyModel } from "../../helpers/tiny-models.js";
import { makeKeys, makeManifest, signedManifest } from "../../unit/agent-updater/helpers.js";

/**
 * The agent's delta installation (agent/updater/delta-install.ts) against the checks that matter: the rebuilt
 * files must match the release-signed manifest, the base must be the committed model, and a failure leaves
 * nothing installed and the committed files untouched. The delta travels through the real downloader and a
 * real SQLite store; the channel is an in-process stand-in for the fleet server (the MQTT and HTTP paths are
 * the downloader's own tests and the e2e test/e2e/rollout-delta.test.ts).
 */
const log = createLogger({ name: "test", level: "silent", pretty: false });
const keys = makeKeys();
const BASE = "a".repeat(64);
const TARGET = "b".repeat(64);
const SAMPLES = Buffer.from('{"samples":[]}\n');

function tinyModel(scale: number): Buffer {
  const m = perturbFinalMatMul(withRawData(buildTinyModel("slow", { scale, slowDepth: 2 })), { relative: 0.5 });
  return Buffer.from(m.bytes);
}

/** Serves the given artifacts by SHA-256 as chunk frames, synchronously in-process. */
function channelFor(artifacts: Map<string, Buffer>): ChunkChannel {
  const listeners = new Set<(frame: Buffer) => void>();
  return {
    connected: () => true,
    request(req: ChunkRequest) {
      const data = artifacts.get(req.bundle) ?? Buffer.alloc(0);
      const bytes = data.subarray(req.offset, req.offset + req.length);
      const frame = encodeChunkFrame(
        { reqId: req.reqId, bundle: req.bundle, offset: req.offset, length: bytes.length, size: data.length },
        bytes,
      );
      queueMicrotask(() => {
        for (const l of listeners) l(frame);
      });
    },
    onFrame(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    onConnectionChange: () => () => undefined,
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ef-delta-install-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function setup(opts: { baseOnDevice: Buffer; deltaBase: Buffer; deltaTarget: Buffer; signedModel: Buffer }) {
  const dirs = { downloads: join(dir, "downloads"), models: join(dir, "models"), staging: join(dir, "staging") };
  await mkdir(join(dirs.models, "tiny", BASE), { recursive: true });
  await writeFile(join(dirs.models, "tiny", BASE, "model.onnx"), opts.baseOnDevice);
  const manifest = makeManifest({}, [
    { path: "model.onnx", data: opts.signedModel },
    { path: "samples.json", data: SAMPLES },
  ]);
  const raw = signedManifest(keys, manifest);
  const { bytes } = encodeDelta({
    baseModel: opts.deltaBase,
    targetModel: opts.deltaTarget,
    files: [{ path: "samples.json", bytes: SAMPLES }],
  });
  const delta = { sha256: sha256Hex(bytes), size: bytes.length, base: BASE };
  const store = openAgentStore(join(dir, "agent.db"));
  const run = () =>
    installFromDelta({
      model: "tiny",
      bundle: TARGET,
      manifest,
      rawManifest: raw,
      delta,
      dirs,
      download: { store, channel: channelFor(new Map([[delta.sha256, bytes]])), clock: systemClock, log },
      setAbort: () => undefined,
    });
  return { dirs, raw, run, store };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (err: { code?: string }) => err.code,
  );
}

describe("installFromDelta (issue 17)", () => {
  it("installs the same files an extraction gives, checked against the signed manifest", async () => {
    const a = tinyModel(1);
    const b = tinyModel(2);
    const { dirs, raw, run, store } = await setup({ baseOnDevice: a, deltaBase: a, deltaTarget: b, signedModel: b });
    await run();
    const dest = join(dirs.models, "tiny", TARGET);
    expect((await readFile(join(dest, "model.onnx"))).equals(b)).toBe(true);
    expect((await readFile(join(dest, "samples.json"))).equals(SAMPLES)).toBe(true);
    expect(await readFile(join(dest, "manifest.json"), "utf8")).toBe(canonicalJson(raw));
    expect(await readdir(dirs.staging)).toEqual([]);
    store.close();
  });

  it("a delta that rebuilds another model than the signed one: DELTA_RESULT_MISMATCH, nothing installed", async () => {
    const a = tinyModel(1);
    const { dirs, run, store } = await setup({
      baseOnDevice: a,
      deltaBase: a,
      deltaTarget: tinyModel(3), // consistent in itself, but not what the release key signed
      signedModel: tinyModel(2),
    });
    expect(await codeOf(run())).toBe("DELTA_RESULT_MISMATCH");
    expect(await readdir(join(dirs.models, "tiny"))).toEqual([BASE]);
    expect(await readdir(dirs.staging).catch(() => [])).toEqual([]);
    expect((await readFile(join(dirs.models, "tiny", BASE, "model.onnx"))).equals(a)).toBe(true);
    store.close();
  });

  it("a device whose committed model is not the delta's base: DELTA_BASE_MISMATCH", async () => {
    const b = tinyModel(2);
    const { dirs, run, store } = await setup({
      baseOnDevice: tinyModel(5),
      deltaBase: tinyModel(1),
      deltaTarget: b,
      signedModel: b,
    });
    expect(await codeOf(run())).toBe("DELTA_BASE_MISMATCH");
    expect(await readdir(join(dirs.models, "tiny"))).toEqual([BASE]);
    store.close();
  });
});
