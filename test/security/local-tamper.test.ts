import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { onnx } from "onnx-proto";
import onnxProto from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findExternalData } from "../../agent/bundle/onnx-external-data.js";
import { readAgentDb } from "../e2e/runtime-support.js";
import { waitFor } from "../helpers/agent-process.js";
import { buildValidBundle, craftBundle, MODEL, sileroPayload, tampered } from "./bundles.js";
import {
  COMMITTED,
  deviceStatus,
  expectServesCommitted,
  expectUnchanged,
  PROFILE,
  type SecuredDevice,
  startSecuredDevice,
  updateOutcome,
} from "./device.js";

/**
 * Attacks on the bytes after the download was verified (issue 7): ONNX external data naming a file
 * outside the bundle (validly signed, so only the model's content can give it away), and a local
 * process rewriting installed files between staging and loading, or while the agent is down.
 * The updater pauses before `loading` (fault injection) so the test can tamper at that exact point.
 */
const PAUSE_MS = 3000;

/** Silero with its first subgraph Constant tensor moved to "external data" at `location`. */
function sileroWithExternalData(modelBytes: Buffer, location: string): Buffer {
  const m = onnxProto.onnx.ModelProto.decode(modelBytes);
  const find = (g: onnx.IGraphProto, depth: number): onnx.ITensorProto | null => {
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        const inner = a.g ? find(a.g, depth + 1) : null;
        if (inner) return inner;
        if (a.t && depth > 0) return a.t;
      }
    }
    return null;
  };
  const t = find(m.graph!, 0);
  if (!t) throw new Error("no subgraph tensor in Silero");
  t.dataLocation = onnxProto.onnx.TensorProto.DataLocation.EXTERNAL;
  t.externalData = [{ key: "location", value: location }];
  return Buffer.from(onnxProto.onnx.ModelProto.encode(m).finish());
}

describe("security: bytes changed after verification, and ONNX external data", () => {
  let d: SecuredDevice;

  beforeAll(async () => {
    process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP = `loading:${PAUSE_MS}`;
    d = await startSecuredDevice("sec-tamper");
  });

  afterAll(async () => {
    delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
    await d?.close();
  });

  it("1. a signed bundle whose model.onnx has external data at ../../../etc/passwd → BUNDLE_UNSAFE_ENTRY before loading", async () => {
    const location = "../../../etc/passwd";
    const model = sileroWithExternalData(d.silero.modelBytes, location);
    expect(findExternalData(model)).toEqual([expect.objectContaining({ location })]);
    const files = sileroPayload(d.silero).map((f) => (f.path === "model.onnx" ? { ...f, data: model } : f));
    const bundle = craftBundle(d.silero, {
      release: { version: "6.0.0", releaseCounter: 3 },
      listed: files,
      entries: files.map((f) => ({ name: f.path, data: f.data })),
      signer: d.adv.keys.release,
    });
    d.adv.serve(bundle);
    const doc = d.adv.desired([bundle]);
    const since = d.adv.events.length;
    await d.adv.publishDesired(doc);
    const outcome = await updateOutcome(d.adv, bundle.sha256, since);
    expect(outcome.to, "AGENT BUG: model with external data installed").toBe("failed");
    expect(outcome.error?.code).toBe("BUNDLE_UNSAFE_ENTRY");
    expect(outcome.error?.message).toContain(location);
    // Refused at staging: never reached the loading step, nothing installed.
    const steps = d.adv.events
      .slice(since)
      .filter((e) => e.type === "update.transition")
      .map((e) => e.to);
    expect(steps).not.toContain("loading");
    await expectUnchanged(d, { lastDesiredSeq: doc.signed.seq });
  });

  it("2. model.onnx rewritten by a local process between staging and loading, again after each repair → never loaded, LOCAL_INTEGRITY_FAILED, the genuine bundle not marked bad, committed keeps serving", async () => {
    const bundle = await buildValidBundle(
      d.adv.dir,
      d.silero,
      { version: "6.0.1", releaseCounter: 4 },
      d.adv.keys.release,
    );
    d.adv.serve(bundle);
    const doc = d.adv.desired([bundle]);
    const since = d.adv.events.length;
    await d.adv.publishDesired(doc);
    // A persistent local attacker: verified and installed, then one byte of the model swapped (same
    // size) before every load. The agent re-makes the files from the kept, verified bundle twice
    // (agent/updater/damaged-candidate.ts), then gives up without blaming the bundle.
    const path = join(d.dataDir, "models", MODEL, bundle.sha256, "model.onnx");
    const loadings = () =>
      d.adv.events.slice(since).filter((e) => e.type === "update.transition" && e.to === "loading").length;
    for (let round = 1; round <= 3; round++) {
      await d.adv.waitForEvent(`the candidate entering loading (${round})`, () => loadings() >= round);
      await writeFile(path, tampered(await readFile(path)));
    }

    const outcome = await updateOutcome(d.adv, bundle.sha256, since);
    expect(outcome.to, "AGENT BUG: tampered model loaded").toBe("failed");
    expect(outcome.error?.code).toBe("LOCAL_INTEGRITY_FAILED");
    expect(outcome.error?.message).toContain("not marked bad");
    const steps = d.adv.events
      .slice(since)
      .filter((e) => e.type === "update.transition")
      .map((e) => e.to);
    expect(steps).not.toContain("smoke-testing");
    expect(steps).not.toContain("swapping");
    expect(loadings()).toBe(3); // the first attempt and two repairs, each refused before the session saw the bytes

    await expectServesCommitted(d);
    const status = await deviceStatus(d);
    expect(status.lastDesiredSeq).toBe(doc.signed.seq);
    expect(status.models[0]).toMatchObject({
      state: "failed",
      committed: { version: COMMITTED.version, sha256: d.committed.sha256, releaseCounter: COMMITTED.releaseCounter },
    });
    expect(await readdir(join(d.dataDir, "staging"))).toEqual([]);
    // (Test 1's bundle is rightly there: its signed content was unsafe.)
    const bad = readAgentDb(d.dataDir).bad.map((b) => b.sha256);
    expect(bad, "AGENT BUG: local damage condemned a genuine bundle").not.toContain(bundle.sha256);
  });

  // The accepted desired state (test 2's) assigns 6.0.1, not the committed bundle, so this is the
  // "report" path; a still-assigned committed bundle is re-acquired instead (test/e2e/self-heal).
  it("3. the committed model.onnx rewritten while the agent is down → not served after restart, error reported", async () => {
    await d.agent.kill("SIGTERM");
    const path = join(d.dataDir, "models", MODEL, d.committed.sha256, "model.onnx");
    await writeFile(path, tampered(await readFile(path)));
    const since = d.adv.events.length;
    const agent = await d.adv.startAgent(PROFILE);
    const ev = await d.adv.waitForEvent(
      "the committed model's integrity failure",
      (e) => d.adv.events.indexOf(e) >= since && e.type === "update.transition" && e.to === "failed",
    );
    expect(ev.model).toBe(MODEL);
    expect(ev.error?.code).toBe("BUNDLE_HASH_MISMATCH");
    expect(ev.error?.message).toMatch(/committed silero-vad@5\.0\.0.*model\.onnx/);

    // The socket answers, but the tampered bytes are never served.
    await waitFor("the restarted socket", async () => (await d.socket.raw("GET", "/v2/health/live")).status === 200);
    expect((await d.socket.raw("GET", `/v2/models/${MODEL}/ready`)).status).not.toBe(200);
    await expect(d.socket.inferTensors(MODEL, d.probe.inputs)).rejects.toThrow();
    const status = await deviceStatus(d);
    expect(status.models[0]).toMatchObject({ model: MODEL, state: "failed" });
    expect(agent.logs()).toContain("could not load the committed model");
    expect(agent.logs()).not.toContain("re-acquiring");
  });
});
