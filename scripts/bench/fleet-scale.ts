import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { type AddressInfo, connect, createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { parsePinnedRoot } from "../../agent/trust/pinned-root.js";
import { TELEMETRY_MIGRATION_SQL } from "../../fleet-server/telemetry/telemetry-schema.js";
import { createTopics } from "../../shared/topics.js";
import { sileroModelPath, sileroSamples } from "../demo/silero.js";
import { ApiClient } from "../fleetctl/api-client.js";
import { killChild, waitUntil } from "./fleet-fixture.js";
import { type GatePhaseResult, runGatePhase } from "./fleet-sim/gate-phase.js";
import { createFleetSim, type SimDevice } from "./fleet-sim/simulator.js";
import { benchRecord } from "./telemetry-ingest.js";

/** The per-process open-file limit a child may raise itself to (both the server and Mosquitto hold one socket per device). */
const HARD_NOFILE = Number(execFileSync("sh", ["-c", "ulimit -Hn"]).toString().trim()) || 1024;
const SOFT_NOFILE = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim()) || 1024;

const RECORDS_PER_DEVICE = 100;
const r1 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? null : Math.round(x * 10) / 10);
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** `sh -c 'ulimit -n HARD; exec …'`: the child gets the hard limit without this process needing it. */
function spawnRaised(cmd: string, args: string[], stdio: ("ignore" | "inherit" | "ipc")[], env?: NodeJS.ProcessEnv) {
  return spawn("sh", ["-c", `ulimit -n ${HARD_NOFILE} && exec "$0" "$@"`, cmd, ...args], { stdio, env });
}

async function startMosquitto(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  // Anonymous, like the fanout bench's anchor: the server's device credentials reach Mosquitto only
  // through dynsec (`--mosquitto-dynsec`), which this bench does not set up (see docs/benchmarks.md).
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence false",
      "max_inflight_messages 0",
      "max_connections -1",
      "",
    ].join("\n"),
  );
  const proc = spawnRaised("/usr/sbin/mosquitto", ["-c", conf], ["ignore", "ignore", "ignore"]);
  await waitUntil("mosquitto port", async () => {
    const sock = connect(port, "127.0.0.1");
    return new Promise<boolean>((resolve) => {
      sock.once("connect", () => resolve(true)).once("error", () => resolve(false));
    }).finally(() => sock.destroy());
  });
  return { url: `mqtt://127.0.0.1:${port}`, proc };
}

interface ServerInfo {
  httpUrl: string;
  mqttUrl: string;
  adminToken: string;
  rootJsonPath: string;
  topicPrefix: string;
}

/** The fleet server in its own process (fleet-sim/server-child.ts) and a request/answer channel to it. */
async function startServerChild(dataDir: string, mqttUrl?: string) {
  const tsx = createRequire(import.meta.url).resolve("tsx");
  const entry = new URL("./fleet-sim/server-child.ts", import.meta.url).pathname;
  const env = { ...process.env, FLEET_SIM_DATA_DIR: dataDir, ...(mqttUrl ? { FLEET_SIM_MQTT_URL: mqttUrl } : {}) };
  // BENCH_SCALE_CPU_PROF=<dir>: a V8 CPU profile of the server process, written when it exits.
  const prof = process.env.BENCH_SCALE_CPU_PROF
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_SCALE_CPU_PROF}`]
    : [];
  const proc = spawnRaised(
    process.execPath,
    [...prof, "--import", tsx, entry],
    ["ignore", "inherit", "inherit", "ipc"],
    env,
  );
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`fleet server child exited (${code})`));
      proc.once("exit", onExit);
      proc.once("message", (m) => {
        proc.off("exit", onExit);
        resolve(m as Record<string, unknown>);
      });
    });
  const info = (await next()) as unknown as ServerInfo;
  const ask = async (cmd: string) => {
    const answer = next();
    proc.send({ cmd });
    return answer;
  };
  return { proc, info, ask };
}

/** Polls a list endpoint every `everyMs` and keeps each answer's latency, per phase label. */
function startApiPoller(info: ServerInfo, path: string, everyMs: number) {
  const byPhase = new Map<string, number[]>();
  let phase = "idle";
  let stopped = false;
  let failures = 0;
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      try {
        const res = await fetch(`${info.httpUrl}${path}`, { headers: { authorization: `Bearer ${info.adminToken}` } });
        await res.arrayBuffer();
        if (!res.ok) failures++;
      } catch {
        failures++;
      }
      const ms = performance.now() - t0;
      const list = byPhase.get(phase) ?? [];
      list.push(ms);
      byPhase.set(phase, list);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    setPhase: (p: string) => {
      phase = p;
    },
    async stop() {
      stopped = true;
      await loop;
      const out: Record<string, unknown> = { path, failures };
      for (const [p, l] of byPhase) {
        const s = [...l].sort((a, b) => a - b);
        out[p] = { n: s.length, p50Ms: r1(pct(s, 50)), p99Ms: r1(pct(s, 99)), maxMs: r1(s.at(-1)) };
      }
      return out;
    },
  };
}

/** The anchor: the same rows into the server's own telemetry table with raw better-sqlite3, 100 rows per transaction. */
function rawInsertRowsPerSec(dir: string, devices: number): number {
  const db = new Database(join(dir, "raw-telemetry.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(TELEMETRY_MIGRATION_SQL);
  const insert = db.prepare(
    `INSERT OR IGNORE INTO telemetry_records (device_id, seq, kind, ts, model, version, cohort, ok, latency_ms, non_finite, source, body, received_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const tx = db.transaction((id: string) => {
    for (let seq = 1; seq <= RECORDS_PER_DEVICE; seq++) {
      const r = { ...benchRecord(seq), seq } as ReturnType<typeof benchRecord> & {
        seq: number;
        model: string;
        version: string;
        totalMs: number;
        source: string;
      };
      insert.run(
        id,
        seq,
        r.kind,
        r.ts,
        r.model,
        r.version,
        "all",
        1,
        r.totalMs,
        0,
        r.source,
        JSON.stringify(r),
        Date.now(),
      );
    }
  });
  const t0 = performance.now();
  for (let i = 0; i < devices; i++) tx(`sim-${i}`);
  const ms = performance.now() - t0;
  db.close();
  return (devices * RECORDS_PER_DEVICE) / (ms / 1000);
}

async function scaleOnce(root: string, broker: "aedes" | "mosquitto", n: number): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(root, `${broker}-`));
  let mosq: ChildProcess | undefined;
  let server: Awaited<ReturnType<typeof startServerChild>> | undefined;
  let sim: ReturnType<typeof createFleetSim> | undefined;
  try {
    let mqttUrl: string | undefined;
    if (broker === "mosquitto") {
      const m = await startMosquitto(dir);
      mosq = m.proc;
      mqttUrl = m.url;
    }
    server = await startServerChild(join(dir, "server"), mqttUrl);
    const info = server.info;
    const api = new ApiClient({ baseUrl: info.httpUrl, token: info.adminToken });

    const up = await api.upload(sileroModelPath());
    await api.createModel({ name: "silero-vad", version: "5.0.0", upload: up.sha256, samples: sileroSamples() });
    const version = await api.getModelVersion("silero-vad", "5.0.0");
    const sha = version.variants.find((v) => v.variant === "fp32")?.bundle?.sha256;
    if (!sha) throw new Error("fp32 bundle missing");

    // Enrollment through the bulk route, in the batches fleetctl sends.
    const devices: SimDevice[] = [];
    let t0 = performance.now();
    for (let at = 0; at < n; at += 1000) {
      const batch = Array.from({ length: Math.min(1000, n - at) }, (_, i) => ({
        id: `sim-${at + i}`,
        profile: "generic-x64",
        tags: { fleet: "sim" },
      }));
      const res = await api.importDevices({ devices: batch });
      for (const r of res.results) if (r.ok) devices.push({ id: r.id, password: r.password });
    }
    const enrollMs = performance.now() - t0;
    if (devices.length !== n) throw new Error(`enrolled ${devices.length} of ${n}`);

    const rootDoc = parsePinnedRoot(JSON.parse(await readFile(info.rootJsonPath, "utf8")));
    sim = createFleetSim({
      mqttUrl: info.mqttUrl,
      topics: createTopics(info.topicPrefix),
      devices,
      root: rootDoc,
      verifyEvery: 100,
    });
    const poller = startApiPoller(info, process.env.BENCH_SCALE_POLL ?? "/v1/devices?limit=50", 100);

    poller.setPhase("connect");
    await server.ask("eld-reset");
    const connectMs = await sim.connectAll();
    const eldConnect = await server.ask("eld");
    poller.setPhase("settle");
    await new Promise((r) => setTimeout(r, 2000)); // presence and reported states drain

    poller.setPhase("fanout");
    await server.ask("eld-reset");
    const since = process.hrtime.bigint();
    const waiting = sim.awaitDesired(sha, since, Number(process.env.BENCH_SCALE_FANOUT_TIMEOUT_MS ?? 180_000));
    const rollout = await api.createRollout({
      model: "silero-vad",
      version: "5.0.0",
      variant: "fp32",
      strategy: "all-at-once",
      target: { tags: { fleet: "sim" } },
    });
    const createMs = Number(process.hrtime.bigint() - since) / 1e6;
    const fan = await waiting;
    const eldFanout = await server.ask("eld");
    poller.setPhase("settle2");
    await new Promise((r) => setTimeout(r, 2000));

    poller.setPhase("telemetry");
    await server.ask("eld-reset");
    // BENCH_SCALE_STORM=0 skips the storm (e.g. to profile the gate phase alone).
    const storm =
      process.env.BENCH_SCALE_STORM === "0"
        ? { ms: 1, acked: 0 }
        : await sim.telemetryStorm(
            RECORDS_PER_DEVICE,
            1000,
            Number(process.env.BENCH_SCALE_STORM_TIMEOUT_MS ?? 180_000),
          );
    const eldStorm = await server.ask("eld");
    poller.setPhase("after");
    // Rollout status with the counts over the whole fleet (the view every operator polls).
    t0 = performance.now();
    const view = await api.getRollout(rollout.id);
    const statusMs = performance.now() - t0;
    // Staged cohorts with a failing share: the gate trips and the rollout rolls back (issue 14).
    let gate: GatePhaseResult | null = null;
    if (process.env.BENCH_SCALE_GATE !== "0") {
      poller.setPhase("gate");
      await api.createModel({ name: "silero-vad", version: "5.0.1", upload: up.sha256, samples: sileroSamples() });
      const v2 = await api.getModelVersion("silero-vad", "5.0.1");
      const sha2 = v2.variants.find((v) => v.variant === "fp32")?.bundle?.sha256;
      if (!sha2) throw new Error("fp32 bundle of 5.0.1 missing");
      gate = await runGatePhase({
        api,
        server: { url: info.httpUrl, token: info.adminToken },
        sim,
        model: "silero-vad",
        version: "5.0.1",
        sha256: sha2,
        failPercent: 20,
        devices: n,
        timeoutMs: Number(process.env.BENCH_SCALE_GATE_TIMEOUT_MS ?? 300_000),
      });
    }
    const api99 = await poller.stop();
    const rawRate = rawInsertRowsPerSec(dir, n);
    const ingestRate = (storm.acked * RECORDS_PER_DEVICE) / (storm.ms / 1000);
    return {
      broker,
      devices: n,
      enrollMs: Math.round(enrollMs),
      connectAllMs: Math.round(connectMs),
      connectEventLoop: eldConnect,
      fanout: {
        createRolloutMs: r1(createMs),
        received: fan.received,
        p50Ms: r1(pct(fan.times, 50)),
        p99Ms: r1(pct(fan.times, 99)),
        allMs: fan.received === n ? r1(fan.times.at(-1)) : null,
        eventLoop: eldFanout,
        verified: sim.verified(),
        verifyFailures: sim.verifyFailures(),
      },
      telemetry: {
        records: storm.acked * RECORDS_PER_DEVICE,
        acked: storm.acked,
        ms: Math.round(storm.ms),
        ingestRowsPerSec: Math.round(ingestRate),
        rawRowsPerSec: Math.round(rawRate),
        ratio: Math.round((ingestRate / rawRate) * 100) / 100,
        eventLoop: eldStorm,
      },
      rolloutStatus: { ms: r1(statusMs), counts: (view as { counts?: unknown }).counts ?? null },
      gate,
      api: api99,
      serverRssMiB: (eldStorm as { rssMiB?: number }).rssMiB,
    };
  } finally {
    await sim?.close().catch(() => undefined);
    if (server) {
      const proc = server.proc;
      const exited = new Promise((r) => proc.once("exit", r));
      if (proc.exitCode === null) proc.send({ cmd: "close" });
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      await killChild(proc);
    }
    if (mosq) await killChild(mosq);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Scenario `fleet-scale` (issue 14): N simulated devices (fleet-sim/simulator.ts) against a real fleet
 * server in its own process, with the embedded aedes broker and/or an external Mosquitto.
 * `BENCH_SCALE_N` (default 1000), `BENCH_SCALE_BROKER` = aedes | mosquitto | both (default both).
 */
export async function benchFleetScale(n: number, brokers: string): Promise<Record<string, unknown>> {
  if (SOFT_NOFILE < n + 512) {
    throw new Error(
      `open-file limit ${SOFT_NOFILE} is too low for ${n} devices in this process: run \`ulimit -n ${HARD_NOFILE}\` first`,
    );
  }
  const root = await mkdtemp(join(tmpdir(), "ef-bench-scale-"));
  const out: Record<string, unknown> = { scenario: "fleet-scale", devices: n, loadAvgBefore: loadavg().map(r1) };
  try {
    for (const b of ["aedes", "mosquitto"] as const) {
      if (brokers !== "both" && brokers !== b) continue;
      out[b] = await scaleOnce(root, b, n);
    }
    out.loadAvgAfter = loadavg().map(r1);
    return out;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
