import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { buildAgent } from "../../scripts/build/build-agent.js";
import { type NotifySocket, openNotifySocket } from "../helpers/notify-socket.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { expectedY, MODEL, startCommittedTiny } from "./runtime-support.js";

/**
 * Issue 16: the real agent process under a (fake) systemd with Type=notify and a watchdog. READY=1
 * must come only once the agent serves its committed model — an app that systemd starts
 * `After=edgefleet-agent.service` gets answers, not a refused connection — then watchdog pings with
 * the model's state in STATUS=, and STOPPING=1 on SIGTERM.
 */
const ID = "systemd";
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const X: [number, number, number, number] = [1, 2, 3, 4];

describe("e2e: agent under systemd Type=notify", () => {
  let env: Awaited<ReturnType<typeof startCommittedTiny>>;
  let sock: NotifySocket;

  beforeAll(async () => {
    env = await startCommittedTiny(ID);
    sock = await openNotifySocket(join(env.tmp.path, "notify.sock"));
  }, 180_000);
  afterAll(async () => {
    await sock?.close();
    await env?.close();
  });

  it("READY=1 only when the committed model answers; pings carry its state; STOPPING=1 on SIGTERM", async () => {
    const agent = await env.h.restartAgent(ID, "SIGTERM", {
      env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: "1000000" },
    });
    const ready = await sock.next((m) => m.startsWith("READY=1"));
    // Asked at once, without polling: when READY=1 arrives the model is already served.
    const res = await new SocketClient(agent.config.socketPath).inferTensors(MODEL, tinyInput(X));
    expect(res.model_version).toBe("1.0.0");
    expect(res.outputs[0]?.data).toEqual(expectedY(1, X));
    expect(ready.message).toContain(`MAINPID=${agent.proc.pid}`);
    expect(ready.message).toMatch(/STATUS=serving: .*committed 1\.0\.0/);
    expect(sock.messages.slice(0, ready.index)).toEqual([]); // nothing before READY

    await sock.next((m) => m.startsWith("WATCHDOG=1"), ready.index + 1);
    await sock.next((m) => m.startsWith("WATCHDOG=1"), sock.messages.length);

    await agent.kill("SIGTERM");
    const stop = await sock.next((m) => m.startsWith("STOPPING=1"), ready.index + 1);
    expect(sock.messages.slice(stop.index + 1).filter((m) => m.startsWith("WATCHDOG=1"))).toEqual([]);
  });

  it("the same from the esbuild bundle (npm run build:agent): plain node, its own model host, its addons", async () => {
    const out = join(REPO, `.test-dist-${process.pid}`);
    try {
      const { entry } = await buildAgent(out);
      const from = sock.messages.length;
      const agent = await env.h.restartAgent(ID, "SIGTERM", {
        entry,
        env: { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: "1000000" },
      });
      // READY=1 came through the bundle's copy of the sd-notify addon.
      await sock.next((m) => m.startsWith("READY=1"), from);
      const res = await new SocketClient(agent.config.socketPath).inferTensors(MODEL, tinyInput(X));
      expect(res.outputs[0]?.data).toEqual(expectedY(1, X));
      // No TypeScript runner in the agent or its host: both run the bundle's files.
      const hostPid = Number(
        execFileSync("pgrep", ["-P", String(agent.proc.pid)], { encoding: "utf8" })
          .trim()
          .split("\n")[0],
      );
      for (const pid of [agent.proc.pid!, hostPid]) {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
        expect(cmd).toContain(out);
        expect(cmd).not.toMatch(/tsx/);
      }
      const maps = readFileSync(`/proc/${agent.proc.pid}/maps`, "utf8");
      expect(maps, "the agent process must not load onnxruntime: only model hosts do").not.toMatch(/onnxruntime/);
      await agent.kill("SIGTERM");
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
