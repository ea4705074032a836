import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { SocketClient } from "../../agent/client/socket-client.js";
import { sha256Hex } from "../../shared/hash.js";
import { waitFor } from "../helpers/agent-process.js";
import { runDirect } from "../helpers/onnx-direct.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { waitForServing } from "./fleet-harness.js";
import { MODEL, modelOf, readAgentDb, startCommittedTiny, status, waitStatus } from "./runtime-support.js";

/**
 * A committed model whose files were damaged while the agent was down (flipped bytes, a deleted
 * file) heals itself at the next start: the damaged files are never loaded, the integrity failure
 * is reported, the same bundle is re-extracted from the kept download when that still hashes to the
 * signed sha256 (no server needed: test 1 runs with the server's copy gone) or downloaded again
 * from the real fleet server when it does not, then verified, smoke-tested and served, and the
 * genuine bundle is never marked bad. The flipped bytes sit in the
 * model's bias, so the damaged model still loads and would answer differently: any answer built
 * from them fails the output comparison.
 */
const ID = "heal-1";
const X: [number, number, number, number] = [1, 2, 3, 4];

/** The fields of a device event these checks read; the API's events are parsed into it. */
const SeenEventSchema = z.looseObject({
  type: z.string(),
  eventSeq: z.number(),
  model: z.string().nullable().optional(),
  bundle: z.string().nullable().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  error: z
    .object({
      code: z.string(),
      message: z.string(),
      details: z.looseObject({ repair: z.record(z.string(), z.unknown()).optional() }).optional(),
    })
    .optional(),
});
type SeenEvent = z.infer<typeof SeenEventSchema>;

describe("e2e: a damaged committed model heals itself", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let dataDir: string;
  let sha: string;
  let original: Buffer;
  let expected: unknown;

  const modelPath = () => join(dataDir, "models", MODEL, sha, "model.onnx");
  const serverBlob = () => join(env.h.root, "server", "bundles", sha);
  const events = async (): Promise<SeenEvent[]> =>
    z.array(SeenEventSchema).parse((await env.h.api.getDevice(ID)).events);
  const lastEventSeq = async () => Math.max(0, ...(await events()).map((e) => e.eventSeq));
  const outputs = async (c: SocketClient) => {
    const res = await c.inferTensors(MODEL, tinyInput(X));
    return Object.fromEntries(res.outputs.map((o) => [o.name, { datatype: o.datatype, shape: o.shape, data: o.data }]));
  };
  /** The repair's transitions (oldest first), once the server has seen it commit again. */
  const repairTransitions = (since: number) =>
    waitFor(
      "the repair's transitions at the server",
      async () => {
        const seen = (await events())
          .filter((e) => e.type === "update.transition" && e.model === MODEL && e.eventSeq > since)
          .sort((a, b) => a.eventSeq - b.eventSeq);
        return seen.some((e) => e.to === "committed") ? seen : null;
      },
      120_000,
    );

  /** Stops the agent, damages the installed files with `damage`, starts it again and waits until it serves. */
  const restartWith = async (damage: () => Promise<void>) => {
    const since = await lastEventSeq();
    const served = env.h.server.stats.chunkBytesServed(ID);
    await env.h.agents.get(ID)!.kill("SIGTERM");
    await damage();
    const agent = await env.h.restartAgent(ID);
    const client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "the repaired model committed", (st) => modelOf(st)?.state === "committed");
    return { agent, client, since, served };
  };

  const bundlePath = () => join(dataDir, "downloads", `${sha}.bundle`);
  /** Damages the kept download too, so only the server can heal the model. */
  const damageBundle = async () => {
    const b = await readFile(bundlePath());
    b.writeUInt8(b.readUInt8(b.length >> 1) ^ 0xff, b.length >> 1);
    await writeFile(bundlePath(), b);
  };

  /**
   * What every repair must leave: the original bytes, the original answers, nothing marked bad;
   * `from` says where the bundle came from (the kept download, or the server again).
   */
  const expectHealed = async (client: SocketClient, served: number, from: "local" | "server") => {
    const s = await status(client);
    expect(modelOf(s)).toMatchObject({ state: "committed", committed: { sha256: sha }, candidate: null });
    expect(modelOf(s)?.error).toBeUndefined();
    expect(s.hosts.filter((h) => h.model === MODEL && h.state === "serving")).toEqual([
      expect.objectContaining({ sha256: sha }),
    ]);
    expect(await outputs(client), "AGENT BUG: not the original model's answers").toEqual(expected);
    expect(sha256Hex(await readFile(modelPath())), "re-extracted model.onnx differs from the original").toBe(
      sha256Hex(original),
    );
    const bundle = await readFile(bundlePath());
    expect(sha256Hex(bundle)).toBe(sha);
    if (from === "server") {
      // Downloaded again, whole, from the server (the damaged local copy was not used).
      expect(env.h.server.stats.chunkBytesServed(ID) - served).toBeGreaterThanOrEqual(bundle.length);
    } else expect(env.h.server.stats.chunkBytesServed(ID) - served, "re-downloaded an intact local bundle").toBe(0);
    expect(readAgentDb(dataDir).bad, "AGENT BUG: the genuine bundle was marked bad").toEqual([]);
  };

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    dataDir = join(env.h.root, ID);
    sha = modelOf(await status(env.client))!.committed!.sha256;
    original = await readFile(modelPath());
    expected = await outputs(env.client);
    // Every test counts the events after the last one the server holds: the install's must be in.
    await waitFor("the server seeing the commit", async () =>
      (await events()).some((e) => e.type === "update.transition" && e.to === "committed"),
    );
  }, 300_000);

  afterAll(async () => {
    await env?.close();
  });

  it("1. model.onnx with flipped bytes, server unreachable: integrity failure reported, re-extracted from the kept bundle, original answers", async () => {
    // The damage must be observable: the flipped model loads and answers differently.
    const bias = Buffer.from(new Float32Array([0.5, -0.25, 0.125, 1]).buffer);
    const at = original.indexOf(bias);
    expect(at, "bias not found in the tiny model").toBeGreaterThan(0);
    const flipped = Buffer.from(original);
    flipped.writeUInt8(flipped.readUInt8(at + 3) ^ 0x01, at + 3); // 0.5 → 0.125: same size, still a valid model
    const flippedPath = join(env.tmp.path, "flipped.onnx");
    await writeFile(flippedPath, flipped);
    expect(await runDirect(flippedPath, tinyInput(X))).not.toEqual(await runDirect(modelPath(), tinyInput(X)));

    // The server's copy is gone for the whole repair: the kept download must be enough.
    const parked = `${serverBlob()}.parked`;
    await rename(serverBlob(), parked);
    const { agent, client, since, served } = await restartWith(() => writeFile(modelPath(), flipped)).finally(() =>
      rename(parked, serverBlob()),
    );
    await expectHealed(client, served, "local");

    const seen = await repairTransitions(since);
    expect(seen.map((e) => e.to)).toEqual([
      "verifying",
      "downloading",
      "staging",
      "loading",
      "smoke-testing",
      "swapping",
      "committed",
    ]);
    const first = seen[0]!;
    expect(first.bundle).toBe(sha);
    expect(first.error?.code).toBe("BUNDLE_HASH_MISMATCH");
    expect(first.error?.message).toMatch(/committed tiny@1\.0\.0 damaged on disk.*model\.onnx/);
    expect(first.error?.details?.repair).toMatchObject({ sha256: sha, version: "1.0.0", attempt: 1 });
    // Every step of the repair says why (the operator sees it in `reported`); the commit clears it.
    for (const e of seen.slice(0, -1)) expect(e.error?.code).toBe("BUNDLE_HASH_MISMATCH");
    expect(seen.at(-1)!.error).toBeUndefined();

    const logs = agent.logs();
    expect(logs).toContain("committed model damaged on disk; re-acquiring");
    expect(logs).toContain("committed model repaired");
    expect(logs).toMatch(/"code":"BUNDLE_HASH_MISMATCH"/);
  });

  it("2. model.onnx deleted and the kept bundle damaged: BUNDLE_MISSING_FILE reported, downloaded again, original answers", async () => {
    const { client, since, served } = await restartWith(async () => {
      await rm(modelPath());
      await damageBundle();
    });
    await expectHealed(client, served, "server");
    const seen = await repairTransitions(since);
    expect(seen[0]).toMatchObject({ to: "verifying", error: { code: "BUNDLE_MISSING_FILE" } });
    expect(seen[0]!.error?.message).toContain("model.onnx is missing");
    expect(seen.at(-1)!.to).toBe("committed");
  });

  it("3. the server cannot deliver the bundle: failure reported, retried with backoff, heals once it can", async () => {
    // The server loses its copy of the bundle for a while: chunk requests are answered NOT_FOUND.
    const parked = `${serverBlob()}.parked`;
    await rename(serverBlob(), parked);
    try {
      const since = await lastEventSeq();
      await env.h.agents.get(ID)!.kill("SIGTERM");
      await rm(modelPath());
      await damageBundle();
      const agent = await env.h.restartAgent(ID);
      const c = new SocketClient(agent.config.socketPath);
      // Reported while it waits, with the attempt count growing (full-jitter backoff, not one try).
      const s = await waitStatus(c, "a third failed repair attempt", (st) => {
        const m = modelOf(st);
        const repair = (m?.error as SeenEvent["error"])?.details?.repair;
        return m?.state === "failed" && Number(repair?.attempt) >= 3;
      });
      const m = modelOf(s)!;
      expect(m).toMatchObject({ committed: { sha256: sha }, candidate: { sha256: sha } });
      expect(m.error?.code).toBe("DOWNLOAD_FAILED");
      expect(m.error?.message).toContain("server has no bundle");
      expect((m.error as SeenEvent["error"])?.details?.repair).toMatchObject({
        damage: "BUNDLE_MISSING_FILE",
        retryInMs: expect.any(Number),
      });
      expect((await c.raw("GET", `/v2/models/${MODEL}/ready`)).status, "AGENT BUG: serving without the model").not.toBe(
        200,
      );
      expect(readAgentDb(dataDir).bad).toEqual([]);
      const served = env.h.server.stats.chunkBytesServed(ID);

      await rename(parked, serverBlob());
      await waitStatus(c, "the repaired model committed", (st) => modelOf(st)?.state === "committed");
      await expectHealed(c, served, "server");
      const seen = await repairTransitions(since);
      expect(seen.filter((e) => e.to === "failed").length).toBeGreaterThanOrEqual(3);
    } finally {
      await rename(parked, serverBlob()).catch(() => undefined);
    }
  });

  it("4. killed in the middle of the repair (at staging, then at loading): resumes as a repair, never a revert", async () => {
    const since = await lastEventSeq();
    const served = env.h.server.stats.chunkBytesServed(ID);
    await env.h.agents.get(ID)!.kill("SIGTERM");
    await writeFile(modelPath(), Buffer.alloc(0));
    /** Restarts with the updater paused before `step` (fault injection), and SIGKILLs it there. */
    const killAt = async (step: string) => {
      process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP = `${step}:60000`;
      const agent = await env.h.restartAgent(ID);
      delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
      const c = new SocketClient(agent.config.socketPath);
      const s = await waitStatus(c, `the repair paused at ${step}`, (st) => modelOf(st)?.state === step);
      expect(modelOf(s)).toMatchObject({ committed: { sha256: sha }, candidate: { sha256: sha } });
      await agent.kill("SIGKILL");
    };
    await killAt("staging");
    await killAt("loading");
    const agent = await env.h.restartAgent(ID);
    const client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "the repaired model committed", (st) => modelOf(st)?.state === "committed");
    await expectHealed(client, served, "local");

    const seen = (await repairTransitions(since)).map((e) => e.to);
    expect(seen).not.toContain("reverting");
    expect(seen).not.toContain("reverted");
    expect(seen).not.toContain("probation");
    expect(seen.at(-1)).toBe("committed");
    // One acquisition step, from the verified bundle on disk; the restarts resumed after it.
    expect(seen.filter((to) => to === "downloading")).toHaveLength(1);
  });
});
