import { mkdir, readFile } from "node:fs/promises";
import { arch } from "node:os";
import { join } from "node:path";
import type { Clock } from "../shared/clock.js";
import type { EdgeFleetError } from "../shared/errors.js";
import { createLogger, type Logger } from "../shared/logger.js";
import type { DeviceProfile } from "../shared/schemas/device-profile.js";
import type { DeviceEvent } from "../shared/schemas/device-state.js";
import { type Root, RootSchema } from "../shared/schemas/trust.js";
import { createTopics } from "../shared/topics.js";
import { createSocketApi } from "./api/socket-api.js";
import { prepareSocketDir } from "./api/socket-dir.js";
import type { AgentConfig } from "./config/agent-config.js";
import { packageRoot } from "./config/package-root.js";
import { registerCostMetrics } from "./cost/cost-metrics.js";
import { startCostSampling } from "./cost/cost-sampling.js";
import { createAgentFeedback } from "./feedback/agent-feedback.js";
import { registerFeedbackMetrics } from "./feedback/feedback-metrics.js";
import { armRewards, reportedFigures } from "./feedback/feedback-stats.js";
import { createJobScheduler } from "./jobs/job-scheduler.js";
import { startStreamJobs } from "./jobs/stream-jobs.js";
import { resolveProfile } from "./profile/load-profiles.js";
import { type AgentModelRuntime, createModelRuntime } from "./runtime/runtime.js";
import { createSequenceStore, recordedAsApi } from "./runtime/sequence-store.js";
import { clockWithFault, faultInjection } from "./service/fault-injection.js";
import { createBanditWeights } from "./serving/bandit.js";
import { createServingLayer } from "./serving/serving-layer.js";
import { registerServingRoutes } from "./serving/serving-routes.js";
import { createLockManager } from "./serving/update-locks.js";
import { openAgentStore } from "./store/agent-store.js";
import type { DbMode } from "./store/fallback-db.js";
import { asStorageFault } from "./store/storage-faults.js";
import { createStorageMonitor, type StorageArea, type StorageMonitor } from "./store/storage-monitor.js";
import { createTelemetryService, type TelemetryService } from "./telemetry/telemetry-service.js";
import { mqttChunkChannel } from "./transport/chunk-channel.js";
import { createMqttLink } from "./transport/mqtt-link.js";
import { checkTlsUrl, loadTlsOptions } from "./transport/tls.js";
import { applyRootChain, applyRootPayload, loadPinnedRoot } from "./trust/pinned-root.js";
import { decodeDesired } from "./updater/accept-desired.js";
import { createUpdater } from "./updater/updater.js";
import type { Updater } from "./updater/updater-types.js";

/** Optional overrides, mainly for tests; everything else is built here (architecture.md §1 composition root). */
export interface AgentDeps {
  log?: Logger;
  clock?: Clock;
  random?: () => number;
  /** Builds the runtime; defaults to the real one (model host processes). */
  createRuntime?: (args: {
    log: Logger;
    clock: Clock;
    profile: DeviceProfile;
    onHostExit: (installed: Parameters<Updater["hostExited"]>[0]) => void;
  }) => AgentModelRuntime;
}

export interface RunningAgent {
  updater: Updater;
  close(): Promise<void>;
}

const ROOT_KEY = "trusted_root";
/** Desired states are a few KiB (manifests included); 4 MiB is far beyond any honest one. */

async function agentVersion(): Promise<string> {
  const pkg = join(packageRoot(import.meta.url), "package.json");
  return (JSON.parse(await readFile(pkg, "utf8")) as { version: string }).version;
}

/**
 * Starts the agent. Order matters (architecture.md §5 "inference works with no network at all"): the
 * committed models are loaded and the socket API listens before MQTT is even attempted.
 */
export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<RunningAgent> {
  const log = deps.log ?? createLogger({ name: "edge-agent", level: config.logLevel });
  const clock = deps.clock ?? clockWithFault(process.env.EDGEFLEET_FAULT_CLOCK_OFFSET_MS, log);
  const dirs = {
    downloads: join(config.dataDir, "downloads"),
    models: join(config.dataDir, "models"),
    staging: join(config.dataDir, "staging"),
  };
  for (const d of [config.dataDir, ...Object.values(dirs)]) {
    // A read-only or full data dir must not stop the agent from serving what it has (issue 20 §2).
    await mkdir(d, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      const fault = asStorageFault(err, d);
      if (!fault) throw err;
      log.error({ code: fault.code, path: d }, "cannot create a data directory");
    });
  }

  checkTlsUrl(config.mqttUrl, config.tls);
  const pinned = await loadPinnedRoot(config.rootPath);
  // Issue 20 §2: on a full or read-only disk the stores continue in memory (agent/store/fallback-db.ts)
  // and the storage monitor reports it and puts them back on disk when it can.
  let storage: StorageMonitor | null = null;
  const dbFault = (area: StorageArea) => (mode: DbMode, fault: EdgeFleetError | null) =>
    storage?.report(area, mode === "memory" ? fault : null);
  const store = openAgentStore(join(config.dataDir, "agent.db"), {
    now: clock.now,
    log: log.child({ c: "store" }),
    onModeChange: dbFault("agent-db"),
  });
  // A root rotated over MQTT earlier supersedes the pinned one (it chains from it, architecture.md §3).
  const saved = store.getKv(ROOT_KEY);
  let root: Root = saved ? RootSchema.parse(JSON.parse(saved)) : pinned;
  if (root.version < pinned.version) root = pinned;

  const { profile } = await resolveProfile({ override: config.profile, dir: config.profilesDir });
  const version = await agentVersion();
  const topics = createTopics(config.topicPrefix);
  const t = (k: Parameters<typeof topics.device>[1]) => topics.device(config.deviceId, k);

  let updater: Updater | null = null;
  const runtimeArgs = {
    log: log.child({ c: "runtime" }),
    clock,
    profile,
    onHostExit: (installed: Parameters<Updater["hostExited"]>[0]) => updater?.hostExited(installed),
  };
  const runtime = deps.createRuntime ? deps.createRuntime(runtimeArgs) : createModelRuntime(runtimeArgs);

  const link = createMqttLink({
    url: config.mqttUrl,
    deviceId: config.deviceId,
    password: config.password,
    topics,
    subscriptions: [t("desired"), t("chunks/res"), t("telemetry/ack"), topics.trustRoot()],
    log: log.child({ c: "mqtt" }),
    clock,
    keepaliveSec: config.mqtt.keepaliveSec,
    connectTimeoutMs: config.mqtt.connectTimeoutMs,
    backoff: config.mqtt.reconnect,
    maxQueuedOffline: config.mqtt.maxQueuedOffline,
    ...(deps.random ? { random: deps.random } : {}),
    ...(config.tls ? { tls: await loadTlsOptions(config.tls) } : {}),
  });
  const late: { telemetry?: TelemetryService } = {};
  const publishEvent = (e: DeviceEvent) => {
    link.publish(t("events"), JSON.stringify(e), { qos: 1 });
    late.telemetry?.recordEvent(e); // the live topic may drop while offline; the buffer does not
  };
  const monitor = createStorageMonitor({
    log: log.child({ c: "storage" }),
    clock,
    deviceId: config.deviceId,
    dataDir: config.dataDir,
    publishEvent,
    nextEventSeq: () => store.nextEventSeq(),
    ...(deps.random ? { random: deps.random } : {}),
    ...(config.storage ? { backoff: config.storage } : {}),
  });
  storage = monitor;
  const opened = store.health();
  if (opened.fault) monitor.report("agent-db", opened.fault);
  monitor.addRestorer("agent-db", () => store.restore());
  // Telemetry before the updater starts, so startup events and warm-up inferences are buffered too.
  const telemetry = createTelemetryService({
    log: log.child({ c: "telemetry" }),
    clock,
    dataDir: config.dataDir,
    deviceId: config.deviceId,
    profile,
    config: config.telemetry,
    connected: () => link.state() === "connected",
    publish: (payload) => link.publish(t("telemetry"), payload, { qos: 1 }),
    storage: {
      dropped: (reason, n) => monitor.telemetryDropped(reason, n),
      volatile: (n) => monitor.telemetryVolatile(n),
      modeChange: dbFault("telemetry-db"),
    },
  });
  late.telemetry = telemetry;
  monitor.addRestorer("telemetry-db", () => telemetry.buffer.restore());
  runtime.observe((r) => telemetry.onInference(r));

  const tapped = telemetry.tap(runtime);
  const tappedRaw = telemetry.tapRaw((r) => runtime.inferRaw(r));
  // Strategies, batching and cache between the API and the runtime (agent/serving, issue 8). JSON
  // requests without batching/cache go through the telemetry tap; typed ones use the runtime's raw path.
  // Built before the updater: it attaches side candidates (shadow / A-B) and serving options.
  // Bandit A/B (issue 22): the two arms' rewards are the feedback window's counts for the split's
  // versions (`feedback` is built further down; this runs only when a request is served).
  const bandit = createBanditWeights({
    now: () => clock.now(),
    random: deps.random ?? Math.random,
    rewards: (model) =>
      armRewards(feedback.stats.snapshot(model), runtime.serving().get(model), serving.strategy(model)),
  });
  const serving = createServingLayer({
    log: log.child({ c: "serving" }),
    bandit,
    backend: {
      // Client traffic on the typed path is telemetry too; shadow runs are marked `internal` by the serving layer.
      inferRaw: (r) => (r.internal ? runtime.inferRaw(r) : tappedRaw(r)),
      infer: (r) => tapped.infer(r),
      serving: () => runtime.serving(),
      loaded: () => runtime.loaded(),
      stateOf: (v) => runtime.stateOf(v),
    },
  });
  // Apps' update locks (issue 8): the updater's swap step waits for them.
  const locks = createLockManager({ log: log.child({ c: "locks" }), clock });
  // Ground truth joined to predictions that carried an `id` (issue 22, agent/feedback/agent-feedback.ts).
  const { feedback, close: closeFeedback } = createAgentFeedback({
    clock,
    log,
    config: config.feedback,
    deviceId: config.deviceId,
    nextEventSeq: () => store.nextEventSeq(),
    publishEvent,
    republish: () => updater?.publishReported(),
  });
  // Cost per prediction (issue 22): CPU per run from the hosts' replies, memory sampled. The figures
  // ride in `reported`, republished at most every `cost.reportSeconds` (like feedback above).
  const cost = startCostSampling({
    clock,
    log: log.child({ c: "cost" }),
    runtime,
    rssSampleMs: config.cost.rssSampleSeconds * 1000,
    reportMs: config.cost.reportSeconds * 1000,
    publish: () => updater?.publishReported(),
  });
  const up = createUpdater({
    log: log.child({ c: "updater" }),
    clock,
    store,
    runtime,
    channel: mqttChunkChannel(link, topics, config.deviceId),
    publish: {
      event: publishEvent,
      reported: (r) => link.publish(t("reported"), JSON.stringify(r), { qos: 1, retain: true }),
    },
    root: () => root,
    dirs,
    identity: { deviceId: config.deviceId, agentVersion: version, profile: profile.id, arch: arch() },
    facts: {
      arch: arch(),
      memoryBudgetMB: profile.memoryBudgetMB,
      agentVersion: version,
      executionProviders: profile.session.executionProviders,
    },
    limits: { memoryBudgetMB: profile.memoryBudgetMB, maxLoadedModels: profile.maxLoadedModels },
    download: config.download,
    locks,
    serving,
    storage: monitor,
    feedback: () => reportedFigures(feedback.stats.snapshot()),
    cost: () => cost.snapshot(),
    ...(config.storage ? { storageBackoff: config.storage } : {}),
    ...(deps.random ? { random: deps.random } : {}),
    ...faultInjection(process.env, log),
  });
  updater = up;
  monitor.onChange(() => up.publishReported());
  await up.start();

  const status = () => {
    const r = up.reported();
    return {
      deviceId: config.deviceId,
      profile: profile.id,
      agentVersion: version,
      connection: link.state(),
      lastDesiredSeq: r.lastDesiredSeq,
      models: r.models,
      storage: r.storage ?? null,
      // One entry per model host process: what operators (and tests) need to see isolation at work.
      hosts: runtime.loaded().map((l) => ({
        model: l.installed.model,
        version: l.installed.version,
        sha256: l.installed.sha256,
        state: runtime.stateOf(l),
        ...(({ parked, reloads, lastReloadMs }) => ({
          pid: parked ? null : runtime.hostPid(l),
          restarts: runtime.restarts(l),
          inFlight: runtime.inFlight(l),
          // Low-power profiles: the host is stopped until the next request (idle-unload.ts).
          parked,
          reloads,
          lastReloadMs,
        }))(runtime.idleState(l)),
      })),
    };
  };
  registerFeedbackMetrics(telemetry.metrics.registry, feedback);
  registerCostMetrics(telemetry.metrics.registry, () => cost.snapshot());
  // Sequence frames: recorded as the app's requests (telemetry, probation), with outputs and drift like JSON ones.
  const sequences = createSequenceStore({ runtime: recordedAsApi(runtime, telemetry.tapFrames), clock, log });
  const api = createSocketApi({
    log: log.child({ c: "api" }),
    runtime: tapped,
    status,
    socketPath: config.socketPath,
    bodyLimit: config.socketBodyLimitBytes,
    version,
    metrics: () => telemetry.metrics.text(),
    serving,
    registerRoutes: (server) => registerServingRoutes(server, { locks, serving }),
    feedback,
    sequences,
  });
  telemetry.registerRoutes(api.server);
  // Scheduled batch jobs (issue 8): offline runs against the runtime, resumed after a restart.
  const jobs = createJobScheduler({
    log: log.child({ c: "jobs" }),
    clock,
    dataDir: config.dataDir,
    jobs: config.jobs,
    infer: (r) => runtime.infer(r),
    report: (r) => telemetry.recordJobProgress(r),
  });
  jobs.registerRoutes(api.server);
  await prepareSocketDir({ socketPath: config.socketPath, dataDir: config.dataDir, group: config.socketGroup, log });
  await api.listen();
  jobs.start();
  // Stream jobs (issue 18): supervised, resumed from their progress files (agent/jobs/stream-jobs.ts).
  const isServed = (m: string) => runtime.serving().has(m);
  const streamJobs = startStreamJobs({ jobs: config.streamJobs, sequences, isServed, clock, log });

  /** Moves to a newer trusted root when `walk` reaches one; a bad chain changes nothing (architecture.md §3). */
  const adoptRoot = (walk: () => Root): void => {
    try {
      const next = walk();
      if (next.version > root.version) {
        store.setKv(ROOT_KEY, JSON.stringify(next));
        root = next;
        log.info({ version: root.version }, "trusted root rotated");
      }
    } catch (err) {
      log.warn({ err }, "root chain rejected");
    }
  };

  link.onState((s) => s === "connected" && up.publishReported());
  link.onState((s) => telemetry.onConnection(s));
  link.onMessage((topic, payload) => {
    // Whatever a message does, it must not take the agent down (issue 20 §2: a store that cannot
    // even be copied to memory throws its storage fault): logged, and the next message tries again.
    try {
      onMessage(topic, payload);
    } catch (err) {
      log.error({ err, topic }, "inbound message failed");
    }
  });
  const onMessage = (topic: string, payload: Buffer) => {
    if (topic === t("telemetry/ack")) {
      telemetry.onAck(payload);
    } else if (topic === t("desired")) {
      if (payload.length === 0) return; // retained message cleared
      const decoded = decodeDesired(payload);
      if (!decoded.ok) return up.onUnreadableDesired(decoded.error);
      const json = decoded.json;
      // A root chain beside the desired state (issue 7) is walked first, so a rotation the device
      // missed on the trust topic is known before the director's signature is judged.
      const chain = (json as { rootChain?: unknown } | null)?.rootChain;
      if (chain !== undefined) adoptRoot(() => applyRootChain(root, chain));
      up.onDesired(json);
    } else if (topic === topics.trustRoot()) {
      adoptRoot(() => applyRootPayload(root, payload));
    }
  };
  // Only now: every handler is attached, so the retained desired state cannot slip past (see MqttLink.start).
  link.start();

  let closing: Promise<void> | null = null;
  return {
    updater: up,
    close() {
      closing ??= (async () => {
        locks.close(); // first: a swap waiting for a lock must not hold up the shutdown
        closeFeedback();
        cost.close();
        await up.close();
        await link.close(); // publishes `offline` presence
        await streamJobs.close(); // before the API closes the sequence store
        await api.close();
        await jobs.close(); // stops between chunks; an unfinished run resumes at the next start
        serving.close();
        await runtime.close();
        monitor.close();
        await telemetry.close();
        store.close();
      })();
      return closing;
    },
  };
}
