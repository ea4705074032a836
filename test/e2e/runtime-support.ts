import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { SocketApiError, SocketClient } from "../../agent/client/socket-client.js";
import type { ProbationReport, ReportedModel } from "../../shared/schemas/device-state.js";
import { waitFor } from "../helpers/agent-process.js";
import { makeTempDir } from "../helpers/temp-dir.js";
import { type TinyKind, tinyInput, tinySamples, writeTinyModel } from "../helpers/tiny-models.js";
import { type Harness, startHarness, waitForServing } from "./fleet-harness.js";

/** Shared pieces of the runtime end-to-end tests (issue 3): tiny models through the real fleet. */

export const MODEL = "tiny";
export const B = [0.5, -0.25, 0.125, 1];

/** What the linear tiny model of `scale` answers: y = scale·x + b (lets a test check the version label). */
export const expectedY = (scale: number, x: number[]) => x.map((v, i) => Math.fround(v * scale) + B[i]!);

export interface HostInfo {
  model: string;
  version: string;
  sha256: string;
  state: string;
  pid: number;
  restarts: number;
}
/** The agent's `GET /v1/status` shows each model as its `reported` document does (agent/main.ts). */
export type ProbationInfo = ProbationReport;
export type ModelInfo = ReportedModel;
export interface AgentStatus {
  models: ModelInfo[];
  hosts: HostInfo[];
}

export const status = (c: SocketClient) => c.status<AgentStatus>();
export const modelOf = (s: AgentStatus) => s.models.find((m) => m.model === MODEL);
export const servingHosts = (s: AgentStatus) => s.hosts.filter((x) => x.model === MODEL && x.state === "serving");

/** Uploads a tiny model as `version` of MODEL (fp32 only) with the standard positive samples. */
export async function pushTiny(h: Harness, dir: string, version: string, kind: TinyKind, scale = 1): Promise<void> {
  const path = await writeTinyModel(dir, kind, { scale });
  const up = await h.api.upload(path);
  await h.api.createModel({ name: MODEL, version, upload: up.sha256, samples: tinySamples() });
}

/** Rolls `version` out to one device, superseding any rollout of MODEL still in flight (e.g. paused by a failure). */
export async function rollout(h: Harness, deviceId: string, version: string, healthPolicy: Record<string, number>) {
  const { rollouts } = await h.api.listRollouts();
  const supersedes = rollouts
    .filter((r) => r.model === MODEL && ["running", "paused", "rolling-back"].includes(r.status))
    .map((r) => r.id);
  const body = { model: MODEL, version, variant: "fp32", target: { deviceIds: [deviceId] }, healthPolicy, supersedes };
  return h.api.createRollout(body as Parameters<Harness["api"]["createRollout"]>[0]);
}

/** Polls the agent's status until `pred` holds. */
export function waitStatus(c: SocketClient, what: string, pred: (s: AgentStatus) => boolean, timeoutMs = 120_000) {
  return waitFor(
    what,
    async () => {
      const s = await status(c);
      return pred(s) ? s : null;
    },
    timeoutMs,
  );
}

export interface LoadRecord {
  worker: number;
  version: string | null;
  ok: boolean;
  error?: string;
  x: number[];
  y: number[] | null;
}

/**
 * `workers` concurrent clients sending infer requests over the socket back to back until `stop()`.
 * `inputFor(i)` picks the input of the i-th request of a worker.
 */
export function startLoad(socketPath: string, workers: number, inputFor: (i: number) => number[]) {
  const records: LoadRecord[][] = Array.from({ length: workers }, () => []);
  let running = true;
  const loops = records.map(async (mine, worker) => {
    const client = new SocketClient(socketPath);
    for (let i = 0; running; i++) {
      const x = inputFor(i);
      try {
        const res = await client.inferTensors(MODEL, tinyInput(x as [number, number, number, number]));
        const y = (res.outputs.find((o) => o.name === "y")?.data ?? null) as number[] | null;
        mine.push({ worker, version: res.model_version, ok: true, x, y });
      } catch (err) {
        const code = err instanceof SocketApiError ? (err.body as { code?: string } | null)?.code : undefined;
        mine.push({ worker, version: null, ok: false, error: `${code ?? "?"}: ${String(err)}`, x, y: null });
      }
    }
  });
  return {
    records,
    count: () => records.reduce((n, r) => n + r.length, 0),
    async stop() {
      running = false;
      await Promise.all(loops);
      return records;
    },
  };
}

/** The distinct versions one client saw, in order (consecutive duplicates collapsed). */
export function versionRuns(records: LoadRecord[]): string[] {
  const out: string[] = [];
  for (const r of records) if (r.version && out.at(-1) !== r.version) out.push(r.version);
  return out;
}

/** The agent's SQLite state, read-only (WAL allows it while the agent runs). */
export function readAgentDb(dataDir: string) {
  const db = new Database(join(dataDir, "agent.db"), { readonly: true, fileMustExist: true });
  try {
    const models = db.prepare("SELECT model, state, committed, candidate FROM models").all() as {
      model: string;
      state: string;
      committed: string | null;
      candidate: string | null;
    }[];
    const bad = db.prepare("SELECT sha256, reason FROM bad_bundles").all() as { sha256: string; reason: string }[];
    return {
      models: models.map((m) => ({
        ...m,
        committed: m.committed ? (JSON.parse(m.committed) as { version: string; sha256: string }) : null,
        candidate: m.candidate ? (JSON.parse(m.candidate) as { version: string; sha256: string }) : null,
      })),
      bad,
    };
  } finally {
    db.close();
  }
}

export async function rssBytes(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(s)?.[1] ?? 0) * 1024;
}

/**
 * Model host processes whose parent is `ppid` (Linux /proc). Filtered by command line: under tsx the
 * agent may also have an esbuild service child (spawned on a transform-cache miss), which is not a host.
 */
export async function childPids(ppid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) !== ppid) continue;
      const cmd = await readFile(`/proc/${name}/cmdline`, "utf8");
      if (cmd.includes("model-host-main")) out.push(Number(name));
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

export { isAlive } from "../helpers/process-alive.js";

/**
 * The starting point of the runtime e2e suites: a fleet server and one agent `id` with the tiny
 * linear model 1.0.0 committed (probation 0). `close()` stops both and removes the temp dir.
 */
export async function startCommittedTiny(id: string): Promise<{
  tmp: Awaited<ReturnType<typeof makeTempDir>>;
  h: Harness;
  client: SocketClient;
  close(): Promise<void>;
}> {
  const tmp = await makeTempDir(`ef-${id}-`);
  const h = await startHarness(tmp.path);
  const agent = await h.startAgent(id, "generic-x64");
  await pushTiny(h, tmp.path, "1.0.0", "linear", 1);
  await rollout(h, id, "1.0.0", { probationSeconds: 0 });
  const client = await waitForServing(agent, MODEL, 120_000);
  await waitStatus(client, "1.0.0 committed", (s) => modelOf(s)?.committed?.version === "1.0.0");
  return {
    tmp,
    h,
    client,
    async close() {
      await h.close();
      await tmp.cleanup();
    },
  };
}
