import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/**
 * A real fleet server process (`bin/fleet-server.js`) on `dataDir`, for tests that kill and restart
 * it; `extraArgs` are further CLI flags (an external broker, replicas, a database URL).
 */
export function startServerProcess(
  dataDir: string,
  httpPort: number,
  mqttPort: number,
  extraArgs: readonly string[] = [],
): ChildProcess {
  return spawn(
    process.execPath,
    [
      join(REPO, "bin/fleet-server.js"),
      "--data-dir",
      dataDir,
      "--http-port",
      String(httpPort),
      "--mqtt-port",
      String(mqttPort),
      ...extraArgs,
    ],
    { cwd: REPO, env: { ...process.env, LOG_LEVEL: "warn" }, stdio: ["ignore", "ignore", "inherit"] },
  );
}

/** Sends `signal` and waits for the exit (no-op if the process already ended). */
export async function stopProcess(p: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill(signal);
  await exited;
}
