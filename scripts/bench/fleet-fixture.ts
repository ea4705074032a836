import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { type FleetServer, startFleetServer } from "../../fleet-server/main.js";
import { ApiClient } from "../fleetctl/api-client.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** A real fleet server in this process plus an admin API client (bench-side twin of the e2e harness). */
export interface BenchFleet {
  server: FleetServer;
  api: ApiClient;
  close(): Promise<void>;
}

export async function startBenchFleet(root: string, opts: { mqttUrl?: string } = {}): Promise<BenchFleet> {
  const server = await startFleetServer({
    dataDir: join(root, "server"),
    httpPort: 0,
    mqttPort: 0,
    log: pino({ level: "silent" }),
    ...(opts.mqttUrl !== undefined ? { mqttUrl: opts.mqttUrl } : {}),
  });
  const api = new ApiClient({ baseUrl: server.httpUrl, token: server.adminToken });
  return { server, api, close: () => server.close() };
}

export interface BenchAgent {
  proc: ChildProcess;
  socketPath: string;
  kill(): Promise<void>;
}

/** Enrolls `id` and starts a real `edge-agent` process through the package's bin. */
/** `entry`: the agent's entry file (default the bin, which runs the sources through tsx). */
export async function spawnBenchAgent(
  fleet: BenchFleet,
  root: string,
  id: string,
  entry = join(REPO, "bin/edge-agent.js"),
  nodeFlags: readonly string[] = [],
): Promise<BenchAgent> {
  const { password } = await fleet.api.enrollDevice({ id, profile: "generic-x64" });
  const socketPath = join(root, `${id}.sock`);
  const config = {
    deviceId: id,
    mqttUrl: fleet.server.mqttUrl,
    password,
    dataDir: join(root, id),
    socketPath,
    rootPath: fleet.server.rootJsonPath,
    profile: "generic-x64",
    logLevel: "warn",
  };
  const configPath = join(root, `${id}.agent.json`);
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const proc = spawn(process.execPath, [...nodeFlags, entry, "--config", configPath], {
    cwd: REPO,
    env: { ...process.env, LOG_FORMAT: "json" },
    stdio: ["ignore", "ignore", "ignore"],
  });
  return { proc, socketPath, kill: () => killChild(proc) };
}

export function killChild(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    proc.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

export async function waitUntil<T>(what: string, check: () => Promise<T | undefined | null | false>, ms = 90_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

export interface ProcSample {
  rssKiB: number;
  cpuSeconds: number;
}

/** VmRSS from `/proc/<pid>/status` and utime+stime from `/proc/<pid>/stat`. */
export async function sampleProc(pid: number): Promise<ProcSample> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rssKiB = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? Number.NaN);
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised comm; utime and stime are fields 14 and 15 overall.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuSeconds = (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  return { rssKiB, cpuSeconds };
}
