import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { generateMosquittoFiles } from "../../fleet-server/broker/broker-config.js";
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

/** Starts a real Mosquitto on a free loopback port with anonymous access (for behaviour that does not depend on access control; see startDynsecMosquitto). */
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

/**
 * A real Mosquitto configured only by the files `fleet-server broker-config --mosquitto` writes from
 * the server data dir `dataDir` (dynamic security, issue 20 §5), on a free loopback port.
 */
export async function startDynsecMosquitto(
  dataDir: string,
  dir: string,
): Promise<MosquittoHandle & { start(): Promise<void> }> {
  const port = await freePort();
  const files = generateMosquittoFiles({ dataDir, outDir: dir, listener: { port, host: "127.0.0.1" } });
  // The generated fragment is the whole config, plus test-only settings (no persistence on disk).
  const conf = join(dir, "run.conf");
  // Run as ourselves: as root, Mosquitto would drop to the `mosquitto` user, which cannot read the
  // 0600 state file in our temp dir (in production: chown the directory to the broker's user).
  const user = userInfo().username;
  await writeFile(conf, `${await readFile(files.conf, "utf8")}persistence false\nuser ${user}\n`);
  let proc = await spawnMosquitto(conf, port);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get process() {
      return proc;
    },
    /** Starts it again after `stop()`, same port, with the state its plugin saved (no regeneration). */
    async start() {
      proc = await spawnMosquitto(conf, port);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}
