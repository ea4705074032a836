import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { waitForServing } from "./fleet-harness.js";
import {
  expectedY,
  MODEL,
  modelOf,
  pushTiny,
  rollout,
  startCommittedTiny,
  status,
  waitStatus,
} from "./runtime-support.js";

/**
 * The agent's disk does not grow with every release (agent/updater/disk-gc.ts): a real agent and
 * fleet server; after an update commits, the previous version's bundle and extracted files are
 * gone; leftovers of a crash (a half-finished extraction, a stray partial download, a version
 * directory nothing names) are removed at the next start; what serves keeps serving across a
 * restart (its files were not touched).
 */
const ID = "gc-1";
const X: [number, number, number, number] = [1, 2, 3, 4];
const OTHER_SHA = "e".repeat(64);

describe("e2e: device disk garbage collection", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let dataDir: string;
  let v1: string;

  const ls = async (...p: string[]) => (await readdir(join(dataDir, ...p)).catch(() => [] as string[])).sort();
  const answers = async (c: SocketClient) => (await c.inferTensors(MODEL, tinyInput(X))).outputs[0]?.data;

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    dataDir = join(env.h.root, ID);
    v1 = modelOf(await status(env.client))!.committed!.sha256;
  }, 300_000);

  afterAll(async () => {
    await env?.close();
  });

  it("crash leftovers are removed at start; the committed version's files stay and it serves", async () => {
    await env.h.agents.get(ID)!.kill("SIGTERM");
    await mkdir(join(dataDir, "staging", "half-extracted"), { recursive: true });
    await writeFile(join(dataDir, "staging", "half-extracted", "model.onnx"), "partial");
    await writeFile(join(dataDir, "downloads", `${OTHER_SHA}.part`), Buffer.alloc(4096));
    await writeFile(join(dataDir, "downloads", "torn.tmp"), "x");
    await mkdir(join(dataDir, "models", MODEL, OTHER_SHA), { recursive: true });
    await writeFile(join(dataDir, "models", MODEL, OTHER_SHA, "model.onnx"), "old");
    await mkdir(join(dataDir, "models", "gone-model", OTHER_SHA), { recursive: true });

    const agent = await env.h.restartAgent(ID);
    const client = await waitForServing(agent, MODEL, 120_000);
    await expect
      .poll(async () => [await ls("staging"), await ls("downloads"), await ls("models"), await ls("models", MODEL)], {
        timeout: 60_000,
      })
      .toEqual([[], [`${v1}.bundle`], [MODEL], [v1]]);
    expect(await answers(client)).toEqual(expectedY(1, X));
  });

  it("after an update commits, the previous version's bundle and files are gone; the new one survives a restart", async () => {
    await pushTiny(env.h, env.tmp.path, "2.0.0", "linear", 2);
    await rollout(env.h, ID, "2.0.0", { probationSeconds: 0 });
    let client = new SocketClient(env.h.agents.get(ID)!.config.socketPath);
    const after = await waitStatus(client, "2.0.0 committed", (s) => modelOf(s)?.committed?.version === "2.0.0");
    const v2 = modelOf(after)!.committed!.sha256;
    expect(v2).not.toBe(v1);
    await expect
      .poll(async () => [await ls("downloads"), await ls("models", MODEL)], { timeout: 60_000 })
      .toEqual([[`${v2}.bundle`], [v2]]);
    expect(await answers(client)).toEqual(expectedY(2, X));

    await env.h.agents.get(ID)!.kill("SIGTERM");
    const agent = await env.h.restartAgent(ID);
    client = await waitForServing(agent, MODEL, 120_000);
    await waitStatus(client, "2.0.0 committed after restart", (s) => modelOf(s)?.state === "committed");
    expect(modelOf(await status(client))?.committed?.sha256).toBe(v2);
    expect(await answers(client)).toEqual(expectedY(2, X));
  });
});
