import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { extract } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SocketClient } from "../../agent/client/socket-client.js";
import { AGENT_NODE_FLAGS } from "../../agent/service/node-flags.js";
import { packageAgent } from "../../scripts/build/package-agent.js";
import { type NotifySocket, openNotifySocket } from "../helpers/notify-socket.js";
import { tinyInput } from "../helpers/tiny-models.js";
import { expectedY, MODEL, modelOf, pushTiny, rollout, startCommittedTiny, waitStatus } from "./runtime-support.js";

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

  it("from the unpacked linux-x64 package (npm run package:agent): its own node_modules, a rollout committed and served", async () => {
    const work = await mkdtemp(join(tmpdir(), "ef-pkg-e2e-"));
    try {
      const pkg = await packageAgent({ arch: "x64", outDir: work, gzipLevel: 1 });
      // An empty directory outside the repository: nothing of the checkout can be found from there.
      const dir = join(work, "unpacked");
      await mkdir(dir);
      await extract({ file: pkg.tarball, cwd: dir });
      const root = join(dir, "edgefleet-agent");
      // The package installs itself: its unit runs its launcher (staged, systemd untouched).
      writeFileSync(join(work, "pw"), "secret\n");
      writeFileSync(join(work, "root.json"), "{}\n");
      const stage = join(work, "stage");
      execFileSync("bash", [
        join(root, "scripts/install-agent.sh"),
        ...["--device-id", "pi-1", "--mqtt-url", "mqtt://localhost:1883", "--destdir", stage],
        ...["--password-file", join(work, "pw"), "--root-json", join(work, "root.json")],
      ]);
      const unit = readFileSync(join(stage, "etc/systemd/system/edgefleet-agent.service"), "utf8");
      expect(unit).toContain(`ExecStart=${root}/bin/edge-agent --config /etc/edgefleet/agent.json`);
      expect(unit).toContain(`WorkingDirectory=${root}`);
      const from = sock.messages.length;
      const agent = await env.h.restartAgent(ID, "SIGTERM", {
        command: join(root, "bin/edge-agent"),
        env: { EDGEFLEET_NODE: process.execPath, NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: "1000000" },
      });
      // READY=1 came through the package's copy of the sd-notify addon.
      await sock.next((m) => m.startsWith("READY=1"), from);
      const client = new SocketClient(agent.config.socketPath);
      expect((await client.inferTensors(MODEL, tinyInput(X))).model_version).toBe("1.0.0");

      // A new version rolled out by the real fleet server is verified, committed and served by the package.
      await pushTiny(env.h, env.tmp.path, "2.0.0", "linear", 2);
      const r = await rollout(env.h, ID, "2.0.0", { probationSeconds: 1 });
      expect((await env.h.api.waitForRollout(r.id, { timeoutMs: 120_000 })).status).toBe("completed");
      await waitStatus(client, "2.0.0 committed", (s) => modelOf(s)?.committed?.version === "2.0.0");
      const res = await client.inferTensors(MODEL, tinyInput(X));
      expect(res.model_version).toBe("2.0.0");
      expect(res.outputs[0]?.data).toEqual(expectedY(2, X));

      // Agent and host run the package's files with plain node; only the agent has the memory flags.
      const hostPid = Number(
        execFileSync("pgrep", ["-P", String(agent.proc.pid)], { encoding: "utf8" })
          .trim()
          .split("\n")[0],
      );
      const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
      expect(cmdline(agent.proc.pid!)).toContain(`${root}/dist/agent/edge-agent.js`);
      expect(cmdline(hostPid)).toContain(`${root}/dist/agent/model-host-main.js`);
      for (const flag of AGENT_NODE_FLAGS) {
        expect(cmdline(agent.proc.pid!)).toContain(flag);
        expect(cmdline(hostPid)).not.toContain(flag);
      }
      for (const pid of [agent.proc.pid!, hostPid]) expect(cmdline(pid)).not.toMatch(/tsx/);
      const agentMaps = readFileSync(`/proc/${agent.proc.pid}/maps`, "utf8");
      expect(agentMaps, "the agent process must not load onnxruntime: only model hosts do").not.toMatch(/onnxruntime/);
      expect(agentMaps).toContain(`${root}/node_modules/better-sqlite3/build/Release/better_sqlite3.node`);
      const hostMaps = readFileSync(`/proc/${hostPid}/maps`, "utf8");
      expect(hostMaps).toContain(`${root}/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1`);
      expect(hostMaps).not.toContain(REPO);
      await agent.kill("SIGTERM");
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
