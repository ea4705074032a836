import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort, waitForPort } from "./ports.js";

const CANDIDATES = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];

/** Path of Debian's mosquitto binary, or null when it is not installed (CI installs it). */
export function findMosquitto(): string | null {
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

export interface MosquittoHandle {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Runs Debian's mosquitto with `confPath` and resolves once it listens on `port` (rejects with its stderr otherwise). */
export async function spawnMosquitto(confPath: string, port: number): Promise<ChildProcess> {
  const bin = findMosquitto();
  if (!bin) throw new Error("mosquitto is not installed");
  const proc = spawn(bin, ["-c", confPath], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  try {
    await waitForPort(port);
  } catch (err) {
    proc.kill("SIGKILL");
    throw new Error(`mosquitto did not start: ${stderr}`, { cause: err });
  }
  return proc;
}

/** Starts a real Mosquitto on a free loopback port with anonymous access (ACL files are the security issue's work). */
export async function startMosquitto(dir: string): Promise<MosquittoHandle> {
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  await writeFile(
    conf,
    [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false", "max_inflight_messages 0", ""].join(
      "\n",
    ),
  );
  const proc = await spawnMosquitto(conf, port);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    process: proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}
