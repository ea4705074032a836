import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SocketClient } from "../../agent/client/socket-client.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";
import {
  childPids,
  isAlive,
  MODEL,
  modelOf,
  pushTiny,
  rollout,
  rssBytes,
  servingHosts,
  status,
  waitStatus,
} from "./runtime-support.js";

/**
 * Issue 3 memory: every version runs in its own host process, so stopping a host returns its memory
 * to the OS and the agent's own RSS stays flat however many swaps it does.
 */
const ID = "rt-rss";
// 6 swaps show the bound in `npm test` (each swap is a whole rollout, ~8 s); a longer soak is
// `EDGEFLEET_RSS_SWAPS=100 npx vitest run test/e2e/runtime-rss.test.ts` (docs/benchmarks.md), kept
// out of the suite's time budget.
const SWAPS = Number(process.env.EDGEFLEET_RSS_SWAPS ?? 6);
const MB = 2 ** 20;

describe("runtime e2e: memory across repeated swaps", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let h: Harness;
  let client: SocketClient;

  beforeAll(async () => {
    tmp = await makeTempDir("ef-rt-rss-");
    h = await startHarness(tmp.path);
    await h.startAgent(ID, "generic-x64");
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    await tmp?.cleanup();
  });

  it(`agent RSS after ${SWAPS} swaps stays within a small bound of RSS after 1; stopped hosts are gone`, async () => {
    const agent = h.agents.get(ID)!;
    const pid = agent.proc.pid!;
    const rss: number[] = [];
    const stoppedHosts: number[] = [];
    for (let i = 0; i <= SWAPS; i++) {
      const version = `1.${i}.0`;
      await pushTiny(h, tmp.path, version, "linear", 1 + i / 100);
      await rollout(h, ID, version, { probationSeconds: 0 });
      client ??= await waitForServing(agent, MODEL, 120_000);
      const s = await waitStatus(client, `${version} committed`, (x) => modelOf(x)?.committed?.version === version);
      expect(servingHosts(s).map((x) => x.version)).toEqual([version]);
      // Light traffic on each version, so each swap also exercises the request path.
      for (let k = 0; k < 20; k++) {
        await client.inferTensors(MODEL, { x: { datatype: "FP32", shape: [1, 4], data: [k, 1, 2, 3] } });
      }
      stoppedHosts.push(...(await status(client)).hosts.map((x) => x.pid));
      rss.push(await rssBytes(pid));
    }
    // After the first install (i = 0) come SWAPS swaps; compare after swap 1 with after swap SWAPS.
    const afterOne = rss[1]!;
    const afterAll = rss[SWAPS]!;
    console.log(
      `agent RSS after 1 swap ${(afterOne / MB).toFixed(1)} MB, after ${SWAPS} swaps ${(afterAll / MB).toFixed(1)} MB ` +
        `(max ${(Math.max(...rss.slice(1)) / MB).toFixed(1)} MB)`,
    );
    expect(afterAll).toBeLessThan(afterOne + 32 * MB);
    // One host process left (the serving version); every earlier host process has exited.
    const current = servingHosts(await status(client))[0]!.pid;
    // If a host outlived its version, say which one and what the agent logged about it.
    for (const extra of (await childPids(pid)).filter((x) => x !== current)) {
      const cmd = await readFile(`/proc/${extra}/cmdline`, "utf8").catch(() => "(gone)");
      const lines = agent
        .logs()
        .split("\n")
        .filter((l) => l.includes(String(extra)) || /model host|switched/.test(l));
      console.log(`extra child ${extra}: ${cmd.replace(/\0/g, " ")}\n${lines.slice(-40).join("\n")}`);
    }
    await expect.poll(() => childPids(pid), { timeout: 10_000 }).toEqual([current]);
    expect(stoppedHosts.filter((p) => p !== current && isAlive(p))).toEqual([]);
  }, 600_000);
});
