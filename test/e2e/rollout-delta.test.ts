import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { readBundleEntries } from "../../fleet-server/bundles/delta-service.js";
import { encodeDelta } from "../../shared/delta/model-delta.js";
import { sha256Hex } from "../../shared/hash.js";
import { waitFor } from "../helpers/agent-process.js";
import { memo } from "../helpers/memo.js";
import { perturbFinalMatMul, withRawData } from "../helpers/onnx-perturb.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { buildTinyModel, tinySamples } from "../helpers/tiny-models.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { MODEL, modelOf, rollout, status, waitStatus } from "./runtime-support.js";

/**
 * Issue 17, tensor-level deltas with a real agent process: a device with 1.0.0 committed gets 2.0.0 as a delta
 * (a few KB instead of the ~260 KB bundle, counted by the server's chunk accounting) and commits it; then a
 * delta whose stored bytes are corrupted makes the agent fall back to the full bundle, with the reason in an
 * `update.delta` event, and 3.0.0 still commits. Last, SIGKILL with 4.0.0 rebuilt from a delta and staged but
 * not yet in place (fault injection `EDGEFLEET_FAULT_PAUSE_IN_DELTA`): the committed 3.0.0 serves after the
 * restart, and the update then completes.
 *
 * The model: the tiny `slow` model with its 256×256 matrix made incompressible (random weights, stored as
 * raw_data as exporters do), so the full bundle is not gzipped away; versions differ only in the 4×4 `W`.
 */
const ID = "delta-1";

function model(scale: number): Uint8Array {
  return perturbFinalMatMul(withRawData(buildTinyModel("slow", { scale, slowDepth: 2 })), { relative: 0.5, seed: 1 })
    .bytes;
}

type DeviceView = {
  events: { type: string; outcome?: string; error?: { code: string }; bundle?: string; bytes?: number }[];
};
type VersionInfo = { variants: { variant: string; bundle: { sha256: string; size: number } }[] };

describe("delta bundles (issue 17)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;

  async function push(version: string, scale: number): Promise<{ sha256: string; size: number }> {
    const path = join(tmp.path, `model-${version}.onnx`);
    await writeFile(path, model(scale));
    const up = await h.api.upload(path);
    await h.api.createModel({ name: MODEL, version, upload: up.sha256, samples: tinySamples(), quantize: "none" });
    const v = (await h.api.getModelVersion(MODEL, version)) as VersionInfo;
    return v.variants.find((x) => x.variant === "fp32")!.bundle;
  }

  async function deltaEvent(bundle: string) {
    return waitFor(`update.delta event for ${bundle}`, async () => {
      const d = (await h.api.getDevice(ID)) as DeviceView;
      return d.events.find((e) => e.type === "update.delta" && e.bundle === bundle) ?? null;
    });
  }

  async function commit(version: string): Promise<string> {
    const r = await rollout(h, ID, version, { probationSeconds: 0 });
    await waitStatus(client, `${version} committed`, (s) => modelOf(s)?.committed?.version === version);
    return r.id;
  }

  /** The rollout status's delta figures (issue 17), once the server has the device's event. */
  function delivery(id: string) {
    return waitFor(`rollout ${id} shows its delta`, async () => {
      const v = await h.api.getRollout(id);
      return v.delivery && v.delivery.deltasApplied + v.delivery.deltaFallbacks > 0 ? v.delivery : null;
    });
  }

  beforeAll(async () => {
    tmp = await makeTempDir("ef-delta-");
    h = await startHarness(tmp.path);
    const agent = await h.startAgent(ID, "generic-x64");
    await push("1.0.0", 1);
    await rollout(h, ID, "1.0.0", { probationSeconds: 0 });
    client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "1.0.0 committed", (s) => modelOf(s)?.committed?.version === "1.0.0");
  }, 180_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  /**
   * Each case's prerequisite, run once: 2.0.0 through a delta, then 3.0.0 through a fallback. In order
   * the cases share them; a case run alone (`vitest -t`, scripts/ci/tests-alone.ts) builds them first.
   */
  const deltaApplied = memo(async () => {
    const full = await push("2.0.0", 2);
    const before = h.server.stats.chunkBytesServed(ID);
    const id = await commit("2.0.0");
    const served = h.server.stats.chunkBytesServed(ID) - before;
    return { full, id, served, event: await deltaEvent(full.sha256) };
  });
  const deltaFellBack = memo(async () => {
    await deltaApplied();
    const committed = modelOf(await status(client))?.committed;
    expect(committed).toBeDefined();
    const full = await push("3.0.0", 3);
    // The delta the server will build for (committed → 3.0.0) is deterministic: plant corrupted bytes under its
    // name in the server's store first, as a damaged disk would leave them (the server keeps an existing file).
    const bundles = join(tmp.path, "server", "bundles");
    const entries = async (sha: string) => readBundleEntries(join(bundles, sha));
    const [a, b] = await Promise.all([entries(committed!.sha256), entries(full.sha256)]);
    const modelOfBundle = (e: typeof a) => e.find((x) => x.path === "model.onnx")!.bytes;
    const { bytes } = encodeDelta({
      baseModel: modelOfBundle(a),
      targetModel: modelOfBundle(b),
      files: b.filter((x) => x.path !== "model.onnx" && x.path !== "manifest.json"),
    });
    const corrupted = Buffer.from(bytes);
    corrupted[corrupted.length - 1] = (corrupted[corrupted.length - 1] as number) ^ 0xff;
    await writeFile(join(bundles, sha256Hex(bytes)), corrupted);

    const before = h.server.stats.chunkBytesServed(ID);
    const id = await commit("3.0.0");
    const served = h.server.stats.chunkBytesServed(ID) - before;
    return { full, id, served, event: await deltaEvent(full.sha256) };
  });

  it("a device on 1.0.0 gets 2.0.0 as a delta: a small share of the bytes, same signed model", async () => {
    const { full, id, served, event } = await deltaApplied();
    expect(event.bytes).toBeGreaterThan(0);
    expect(await delivery(id)).toEqual({ deltasApplied: 1, deltaFallbacks: 0, bytesSaved: full.size - event.bytes! });
    console.info(JSON.stringify({ figure: "delta-e2e", full: full.size, served }));
    expect(event).toMatchObject({ outcome: "applied" });
    expect(full.size).toBeGreaterThan(200_000);
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThan(full.size * 0.1);
    const out = await client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] } });
    expect(out.model_version).toBe("2.0.0");
    expect(out.outputs.find((o) => o.name === "y")?.data).toEqual([2.5, 1.75, 2.125, 3]); // scale 2
    expect(modelOf(await status(client))?.state).toBe("committed");
  });

  it("a corrupted delta falls back to the full bundle, with the reason in an update.delta event", async () => {
    const { full, id, served, event } = await deltaFellBack();
    expect(await delivery(id)).toEqual({ deltasApplied: 0, deltaFallbacks: 1, bytesSaved: 0 });
    console.info(JSON.stringify({ figure: "delta-fallback-e2e", full: full.size, served, reason: event.error }));
    expect(event).toMatchObject({ outcome: "fallback" });
    expect(event.error?.code).toMatch(/^(BUNDLE_HASH_MISMATCH|DOWNLOAD_FAILED|DELTA_)/);
    expect(served).toBeGreaterThanOrEqual(full.size);
    expect(modelOf(await status(client))?.state).toBe("committed");
  });

  it("SIGKILL with a rebuilt delta staged: the committed model serves, then the update completes", async () => {
    await deltaFellBack();
    const infer = async () => {
      const out = await client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] } });
      return { version: out.model_version, y: out.outputs.find((o) => o.name === "y")?.data };
    };
    const full = await push("4.0.0", 4);
    const staging = join(tmp.path, ID, "staging");
    const staged = () =>
      waitFor("a delta staged", async () => {
        const dirs = await readdir(staging).catch(() => [] as string[]);
        for (const d of dirs.filter((x) => x.startsWith("delta-"))) {
          if (await stat(join(staging, d, "manifest.json")).catch(() => null)) return d;
        }
        return null;
      });
    process.env.EDGEFLEET_FAULT_PAUSE_IN_DELTA = "60000";
    try {
      let agent = await h.restartAgent(ID);
      client = await waitForServing(agent, MODEL);
      await rollout(h, ID, "4.0.0", { probationSeconds: 0 });
      await staged();
      await h.agents.get(ID)!.kill("SIGKILL");
      const installed = join(tmp.path, ID, "models", MODEL, full.sha256);
      expect(await stat(installed).catch(() => null)).toBeNull();
      // Back up, still paused in the (resumed) delta: the committed version serves meanwhile.
      agent = await h.restartAgent(ID);
      client = await waitForServing(agent, MODEL);
      await staged();
      expect(await infer()).toEqual({ version: "3.0.0", y: [3.5, 2.75, 3.125, 4] });
      expect(modelOf(await status(client))?.committed?.version).toBe("3.0.0");
      await h.agents.get(ID)!.kill("SIGKILL");
    } finally {
      delete process.env.EDGEFLEET_FAULT_PAUSE_IN_DELTA;
    }
    const agent = await h.restartAgent(ID);
    client = await waitForServing(agent, MODEL);
    await waitStatus(client, "4.0.0 committed", (s) => modelOf(s)?.committed?.version === "4.0.0");
    expect((await infer()).y).toEqual([4.5, 3.75, 4.125, 5]);
    const d = (await h.api.getDevice(ID)) as DeviceView;
    expect(d.events.some((e) => e.type === "update.delta" && e.bundle === full.sha256 && e.outcome === "applied")).toBe(
      true,
    );
  });
});
