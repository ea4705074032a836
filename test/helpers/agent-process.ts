import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export interface AgentProcessConfig {
  deviceId: string;
  mqttUrl: string;
  password: string;
  dataDir: string;
  socketPath: string;
  rootPath: string;
  profile?: string;
  logLevel?: string;
}

export interface AgentProcess {
  proc: ChildProcess;
  config: AgentProcessConfig;
  logs(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a real edge-agent process through the package's bin, with a JSON config file. */
export async function spawnAgent(
  config: AgentProcessConfig,
  opts: { env?: Record<string, string> } = {},
): Promise<AgentProcess> {
  const configPath = join(config.dataDir, "..", `${config.deviceId}.agent.json`);
  await writeFile(configPath, JSON.stringify({ logLevel: "debug", ...config }, null, 2));
  const proc = spawn(process.execPath, [join(REPO, "bin/edge-agent.js"), "--config", configPath], {
    cwd: REPO,
    env: { ...process.env, LOG_FORMAT: "json", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const append = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
  };
  proc.stdout?.on("data", append);
  proc.stderr?.on("data", append);
  return {
    proc,
    config,
    logs: () => out,
    kill: (signal = "SIGTERM") =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        proc.once("exit", (code) => resolve(code));
        proc.kill(signal);
      }),
  };
}

/** Polls `check` until it returns a truthy value (or throws the last error at the deadline). */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
