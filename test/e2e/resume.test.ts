import { stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/**
 * Resume after SIGKILL mid-download (architecture.md §4): the server caps each device's chunk bandwidth
 * so the download takes seconds, the test kills the agent part-way, and the restarted agent
 * must finish from its persisted offset, re-requesting at most one window of chunks.
 */
const CHUNK = 64 * 1024;
const WINDOW = 2;

describe("bundle download resumes after the agent is killed", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rs-");
    h = await startHarness(tmp.path, { deviceBandwidthBytesPerSec: 512 * 1024 });
    await h.pushSilero();
  });

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it("SIGKILL mid-download, restart: finishes from where it stopped and commits", async () => {
    const id = "rs-1";
    await h.startAgent(id, "generic-x64", { download: { chunkSize: CHUNK, window: WINDOW } });
    const rollout = await h.api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      target: { deviceIds: [id] },
      healthPolicy: { probationSeconds: 1 },
    });
    const version = (await h.api.getModelVersion("silero-vad", "5.0.0")) as {
      variants: { variant: string; bundle: { size: number } }[];
    };
    const bundleSize = version.variants.find((v) => v.variant === "fp32")!.bundle.size;
    expect(bundleSize).toBeGreaterThan(10 * CHUNK);

    // Kill once roughly a third has been served: well inside the download.
    await waitFor("a third of the bundle served", async () => h.server.stats.chunkBytesServed(id) > bundleSize / 3);
    await h.agents.get(id)!.kill("SIGKILL");
    const servedBeforeKill = h.server.stats.chunkBytesServed(id);
    expect(servedBeforeKill).toBeLessThan(bundleSize);
    const part = await stat(join(tmp.path, id, "downloads")).then(() => true);
    expect(part).toBe(true);

    const agent = await h.restartAgent(id);
    const final = await h.api.waitForRollout(rollout.id, { timeoutMs: 120_000 });
    expect(final.status, JSON.stringify(final.devices)).toBe("completed");
    await waitForServing(agent, "silero-vad");

    const total = h.server.stats.chunkBytesServed(id);
    const reRequested = total - bundleSize;
    console.info(
      JSON.stringify({ figure: "resume", bundleSize, servedBeforeKill, total, reRequested, window: WINDOW * CHUNK }),
    );
    expect(reRequested).toBeGreaterThanOrEqual(0);
    expect(reRequested).toBeLessThanOrEqual(WINDOW * CHUNK);
  });
});
