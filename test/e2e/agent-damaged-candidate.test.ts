import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { sha256Hex } from "../../shared/hash.js";
import { waitFor } from "../helpers/agent-process.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { waitForServing } from "./fleet-harness.js";
import {
  type AgentStatus,
  expectedY,
  MODEL,
  modelOf,
  pushTiny,
  readAgentDb,
  rollout,
  startCommittedTiny,
  status,
  waitStatus,
} from "./runtime-support.js";

/**
 * A candidate whose extracted files are changed on the device after staging and before loading
 * (docs/decisions.md "Damaged candidates"). The updater pauses before every `loading` and
 * `smoke-testing` (fault injection, EDGEFLEET_FAULT_PAUSE_BEFORE_STEP, also for side candidates) so the
 * test rewrites the extracted model.onnx (or samples.json) at that exact point. The re-verification before the load catches it; the
 * genuine bundle is then re-extracted from the kept download (or downloaded again when that is
 * damaged too) and the update commits, the bundle never marked bad. Only damage that keeps coming
 * back fails the update, with LOCAL_INTEGRITY_FAILED, still not marking the bundle bad.
 */
const ID = "dmg-cand";
const PAUSE_MS = 4000;
const X: [number, number, number, number] = [1, 2, 3, 4];

/** The fields of a device event these checks read; the API's events are parsed into it. */
const SeenEventSchema = z.looseObject({
  type: z.string(),
  eventSeq: z.number(),
  bundle: z.string().nullable().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  error: z
    .object({
      code: z.string(),
      message: z.string(),
      details: z.looseObject({ localRepair: z.record(z.string(), z.unknown()).optional() }).optional(),
    })
    .optional(),
});
type SeenEvent = z.infer<typeof SeenEventSchema>;
interface SideInfo {
  version: string;
  sha256: string;
  state: string;
  error?: { code: string };
}
const sideOf = (s: AgentStatus) => (modelOf(s) as { side?: SideInfo } | undefined)?.side ?? null;

/** One byte flipped in the middle: same size, so only the hash gives it away. */
function flipped(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  out.writeUInt8(out.readUInt8(out.length >> 1) ^ 0xff, out.length >> 1);
  return out;
}

describe("e2e: a candidate damaged on disk between staging and loading", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let client: SocketClient;
  let dataDir: string;

  const modelPath = (sha: string) => join(dataDir, "models", MODEL, sha, "model.onnx");
  const bundlePath = (sha: string) => join(dataDir, "downloads", `${sha}.bundle`);
  const agentLogs = () => env.h.agents.get(ID)!.logs();
  const served = () => env.h.server.stats.chunkBytesServed(ID);
  const y = async () => {
    const res = await client.inferTensors(MODEL, tinyInput(X));
    return { version: res.model_version, y: res.outputs.find((o) => o.name === "y")?.data };
  };
  /**
   * The bundle's transitions at the server (oldest first), once `done` holds for them. The active
   * pipeline's `committed` clears the candidate, so that event names no bundle: it is taken from after
   * the bundle's first event.
   */
  const transitionsOf = (sha: string, done: (seen: SeenEvent[]) => boolean) =>
    waitFor("the bundle's transitions at the server", async () => {
      const events = z.array(SeenEventSchema).parse((await env.h.api.getDevice(ID)).events);
      const all = events.filter((e) => e.type === "update.transition").sort((a, b) => a.eventSeq - b.eventSeq);
      const first = all.findIndex((e) => e.bundle === sha);
      const seen = first < 0 ? [] : all.slice(first).filter((e) => e.bundle === sha || e.bundle === null);
      return done(seen) ? seen : null;
    });
  /** Rolls `version` (the tiny linear model scaled by `scale`) out as the active version. */
  const rollActive = async (version: string, scale: number) => {
    await pushTiny(env.h, env.tmp.path, version, "linear", scale);
    await rollout(env.h, ID, version, { probationSeconds: 0 });
  };
  /** Waits for the active candidate `version` paused before its load; its sha256. */
  const pausedAtLoading = async (version: string) => {
    const s = await waitStatus(
      client,
      `${version} paused before loading`,
      (st) => modelOf(st)?.state === "loading" && modelOf(st)?.candidate?.version === version,
    );
    return modelOf(s)!.candidate!.sha256;
  };
  /**
   * The committed version and its answers, read at a test's start: every version "N.0.0" here is the
   * tiny linear model scaled by N, so a test need not assume which earlier test ran (issue 23).
   */
  const committedNow = async () => {
    const version = modelOf(await status(client))?.committed?.version;
    if (!version) throw new Error("no committed version serves");
    const scale = Number(version.split(".")[0]);
    return { version, y: expectedY(scale, X) };
  };
  const expectNothingBad = () =>
    expect(readAgentDb(dataDir).bad, "AGENT BUG: a genuine bundle was marked bad").toEqual([]);

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    dataDir = join(env.h.root, ID);
    process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP = `loading:${PAUSE_MS},smoke-testing:${PAUSE_MS}`;
    try {
      client = await waitForServing(await env.h.restartAgent(ID), MODEL, 120_000);
    } finally {
      delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
    }
  }, 300_000);

  afterAll(async () => {
    delete process.env.EDGEFLEET_FAULT_PAUSE_BEFORE_STEP;
    await env?.close();
  });

  it("1. model.onnx rewritten before loading: re-extracted from the kept bundle, the genuine version commits, nothing marked bad", async () => {
    await rollActive("2.0.0", 2);
    const sha = await pausedAtLoading("2.0.0");
    const genuine = await readFile(modelPath(sha));
    const before = served(); // the download is complete by now
    await writeFile(modelPath(sha), flipped(genuine));

    const s = await waitStatus(client, "2.0.0 committed", (st) => modelOf(st)?.committed?.version === "2.0.0");
    expect(modelOf(s)).toMatchObject({ state: "committed", committed: { sha256: sha }, candidate: null });
    expect(modelOf(s)?.error).toBeUndefined();
    expect(await y(), "AGENT BUG: not the genuine 2.0.0's answers").toEqual({ version: "2.0.0", y: expectedY(2, X) });
    expect(sha256Hex(await readFile(modelPath(sha))), "the re-extracted model.onnx is not the genuine one").toBe(
      sha256Hex(genuine),
    );
    expect(served() - before, "re-downloaded although the kept bundle was intact").toBe(0);
    expectNothingBad();

    // The repair is recorded: back from loading to staging with the damage, then on to the commit.
    const seen = await transitionsOf(sha, (e) => e.some((x) => x.to === "committed"));
    expect(seen.map((e) => e.to)).not.toContain("failed");
    const back = seen.findIndex((e) => e.from === "loading" && e.to === "staging");
    expect(back, JSON.stringify(seen.map((e) => `${e.from}->${e.to}`))).toBeGreaterThan(0);
    expect(seen[back]!.error).toMatchObject({
      code: "BUNDLE_HASH_MISMATCH",
      details: { localRepair: { attempt: 1, step: "loading", from: "staging", source: "kept bundle" } },
    });
    expect(seen[back]!.error?.message).toMatch(/candidate tiny@2\.0\.0 damaged on disk.*model\.onnx/);
    expect(seen.slice(back).map((e) => e.to)).toEqual([
      "staging",
      "loading",
      "smoke-testing",
      "swapping",
      "probation",
      "committed",
    ]);
    expect(agentLogs()).toContain("candidate damaged on disk; re-extracting from the kept bundle");
  });

  it("2. the kept bundle damaged too: both deleted, the bundle downloaded again from the server, the genuine version commits", async () => {
    await rollActive("3.0.0", 3);
    const sha = await pausedAtLoading("3.0.0");
    const genuine = await readFile(modelPath(sha));
    const bundle = await readFile(bundlePath(sha));
    const before = served();
    await writeFile(modelPath(sha), flipped(genuine));
    await writeFile(bundlePath(sha), flipped(bundle));

    await waitStatus(client, "3.0.0 committed", (st) => modelOf(st)?.committed?.version === "3.0.0");
    expect(await y()).toEqual({ version: "3.0.0", y: expectedY(3, X) });
    expect(sha256Hex(await readFile(bundlePath(sha)))).toBe(sha);
    expect(served() - before, "the bundle was not downloaded again").toBeGreaterThanOrEqual(bundle.length);
    expectNothingBad();

    const seen = await transitionsOf(sha, (e) => e.some((x) => x.to === "committed"));
    expect(seen.map((e) => e.to)).not.toContain("failed");
    const back = seen.find((e) => e.from === "loading" && e.to === "downloading");
    expect(back?.error).toMatchObject({
      code: "BUNDLE_HASH_MISMATCH",
      details: { localRepair: { attempt: 1, from: "downloading", source: "server" } },
    });
    expect(agentLogs()).toContain("candidate damaged on disk; downloading the bundle again");
  });

  it("3. a shadow side candidate rewritten before loading: re-extracted, runs as the shadow, not marked bad", async () => {
    const active = await committedNow();
    await pushTiny(env.h, env.tmp.path, "4.0.0", "linear", 4);
    const { rollouts } = await env.h.api.listRollouts();
    const supersedes = rollouts.filter((r) => r.model === MODEL && r.status === "running").map((r) => r.id);
    await env.h.api.createRollout({
      model: MODEL,
      version: "4.0.0",
      variant: "fp32",
      target: { deviceIds: [ID] },
      healthPolicy: { probationSeconds: 0 },
      strategy: "shadow",
      shadowSampleRate: 1,
      supersedes,
    } as Parameters<typeof env.h.api.createRollout>[0]);
    const paused = await waitStatus(
      client,
      "the shadow paused before loading",
      (st) => sideOf(st)?.state === "loading" && sideOf(st)?.version === "4.0.0",
    );
    const sha = sideOf(paused)!.sha256;
    const genuine = await readFile(modelPath(sha));
    await writeFile(modelPath(sha), flipped(genuine));

    const s = await waitStatus(client, "the shadow running", (st) => sideOf(st)?.state === "committed");
    expect(sideOf(s)).toMatchObject({ version: "4.0.0", sha256: sha });
    expect(sideOf(s)?.error).toBeUndefined();
    expect((await client.raw("GET", `/v2/models/${MODEL}/versions/4.0.0/ready`)).status).toBe(200);
    // Callers still get the active version; the shadow runs the genuine bytes.
    expect(await y()).toEqual(active);
    expect(sha256Hex(await readFile(modelPath(sha)))).toBe(sha256Hex(genuine));
    expectNothingBad();

    const seen = await transitionsOf(sha, (e) => e.some((x) => x.to === "committed"));
    expect(seen.map((e) => e.to)).not.toContain("failed");
    const back = seen.find((e) => e.from === "loading" && e.to === "staging");
    expect(back?.error).toMatchObject({
      code: "BUNDLE_HASH_MISMATCH",
      details: { localRepair: { attempt: 1, source: "kept bundle" } },
    });
  });

  it("4. damage that keeps coming back: LOCAL_INTEGRITY_FAILED after 2 repairs, the bundle not marked bad, the committed version serves", async () => {
    const active = await committedNow();
    await rollActive("5.0.0", 5);
    const sha = await pausedAtLoading("5.0.0");
    const genuine = await readFile(modelPath(sha));
    const genuineSha = sha256Hex(genuine);
    let damages = 0;
    // Every time the agent has re-extracted the genuine file and is about to load it, rewrite it again.
    const final = await waitFor(
      "the update to give up",
      async () => {
        const s = await status(client);
        const m = modelOf(s);
        if (m?.state === "failed") return s;
        if (m?.state !== "loading" || m.candidate?.sha256 !== sha) return null;
        const now = await readFile(modelPath(sha)).catch(() => null);
        if (now && sha256Hex(now) === genuineSha) {
          await writeFile(modelPath(sha), flipped(genuine));
          damages++;
        }
        return null;
      },
      120_000,
    );
    expect(damages).toBe(3); // the first load and both repairs
    const m = modelOf(final)!;
    expect(m).toMatchObject({ committed: { version: active.version }, candidate: { sha256: sha } });
    expect(m.error).toMatchObject({
      code: "LOCAL_INTEGRITY_FAILED",
      details: { damage: "BUNDLE_HASH_MISMATCH", repairs: 2 },
    });
    expect(m.error?.message).toContain("not marked bad");
    expectNothingBad();
    expect(await y(), "the committed version stopped serving").toEqual(active);
    // The kept bundle is still the genuine one (the damage was only ever the extracted copy).
    expect(sha256Hex(await readFile(bundlePath(sha)))).toBe(sha);

    const seen = await transitionsOf(sha, (e) => e.some((x) => x.to === "failed"));
    expect(seen.filter((e) => e.from === "loading" && e.to === "staging")).toHaveLength(2);
    expect(seen.filter((e) => e.to === "failed")).toHaveLength(1);
    expect(agentLogs()).toContain("candidate damaged on disk again; giving up");
  });

  it("5. samples.json rewritten after the load's re-check, before the smoke test reads it: re-made, the genuine version commits, nothing marked bad", async () => {
    await rollActive("6.0.0", 6);
    const paused = await waitStatus(
      client,
      "6.0.0 paused before its smoke test",
      (st) => modelOf(st)?.state === "smoke-testing" && modelOf(st)?.candidate?.version === "6.0.0",
    );
    const sha = modelOf(paused)!.candidate!.sha256;
    const samples = join(dataDir, "models", MODEL, sha, "samples.json");
    const genuine = await readFile(samples);
    await writeFile(samples, flipped(genuine));

    const s = await waitStatus(client, "6.0.0 committed", (st) => modelOf(st)?.committed?.version === "6.0.0");
    expect(modelOf(s)).toMatchObject({ state: "committed", committed: { sha256: sha }, candidate: null });
    expect(await y(), "AGENT BUG: not the genuine 6.0.0's answers").toEqual({ version: "6.0.0", y: expectedY(6, X) });
    expect(sha256Hex(await readFile(samples)), "the re-extracted samples.json is not the genuine one").toBe(
      sha256Hex(genuine),
    );
    expectNothingBad();

    // Not a failed smoke test: the changed file is caught as it is read, and the candidate re-made.
    const seen = await transitionsOf(sha, (e) => e.some((x) => x.to === "committed"));
    expect(seen.map((e) => e.to)).not.toContain("failed");
    const back = seen.find((e) => e.from === "smoke-testing" && e.to === "staging");
    expect(back?.error, JSON.stringify(seen.map((e) => `${e.from}->${e.to}`))).toMatchObject({
      code: "BUNDLE_HASH_MISMATCH",
      details: { localRepair: { attempt: 1, step: "smoke-testing", from: "staging", source: "kept bundle" } },
    });
    expect(back?.error?.message).toContain("samples.json");
  });
});
