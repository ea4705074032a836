import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentConfigInput } from "../../agent/config/agent-config.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/**
 * The agent's config file as a test writes it: the agent's own config schema's input (so a test
 * can set any key, typed), with the data directory and socket path every test names.
 */
export type AgentProcessConfig = AgentConfigInput & { dataDir: string; socketPath: string };

export interface AgentProcess {
  proc: ChildProcess;
  config: AgentProcessConfig;
  logs(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Agents that exited without a test asking (issue 20 §2: an unhandled rejection in the agent used to
 * end it silently while the test only saw a socket go quiet). `test/helpers/fail-on-agent-exit.ts`
 * (a vitest setup file) fails the running test with these.
 */
const unexpectedExits: string[] = [];

/** The unexpected agent exits seen since the last call (and forgets them). */
export function takeUnexpectedAgentExits(): string[] {
  return unexpectedExits.splice(0);
}

/** Starts a real edge-agent process through the package's bin, with a JSON config file. */
export async function spawnAgent(
  config: AgentProcessConfig,
  opts: {
    env?: Record<string, string>;
    /** The test expects the agent to exit by itself. */
    mayExit?: boolean;
    /** Entry file instead of bin/edge-agent.js (e.g. the bundle from `npm run build:agent`). */
    entry?: string;
    /** An executable to run instead of node + entry (e.g. an unpacked package's bin/edge-agent launcher). */
    command?: string;
  } = {},
): Promise<AgentProcess> {
  const configPath = join(config.dataDir, "..", `${config.deviceId}.agent.json`);
  await writeFile(configPath, JSON.stringify({ logLevel: "debug", ...config }, null, 2));
  const [file, ...args] = opts.command
    ? [opts.command, "--config", configPath]
    : [process.execPath, opts.entry ?? join(REPO, "bin/edge-agent.js"), "--config", configPath];
  const proc = spawn(file!, args, {
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
  let stopping = false;
  proc.once("exit", (code, signal) => {
    if (stopping || opts.mayExit) return;
    const unhandled = /unhandled ?rejection|triggerUncaughtException|uncaught exception/i.test(out);
    unexpectedExits.push(
      `agent ${config.deviceId} exited unexpectedly (code ${code}, signal ${signal})` +
        `${unhandled ? " after an unhandled rejection or exception" : ""}; last output:\n${out.slice(-4000)}`,
    );
  });
  return {
    proc,
    config,
    logs: () => out,
    kill: (signal = "SIGTERM") =>
      new Promise((resolve) => {
        stopping = true;
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
