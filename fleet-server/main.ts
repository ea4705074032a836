import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { systemClock } from "../shared/clock.js";
import { EdgeFleetError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { loadProfiles } from "../shared/profiles/load-profiles.js";
import { createTopics } from "../shared/topics.js";
import { createSecurityRepo } from "./auth/security-repo.js";
import { createSecurityService } from "./auth/security-service.js";
import { type BrokerAccess, dynsecBrokerAccess, unmanagedBrokerAccess } from "./broker/broker-access.js";
import { connectBroker } from "./broker/connect-broker.js";
import { createBlobStore } from "./bundles/bundle-store.js";
import { createChunkServer } from "./bundles/chunk-server.js";
import { createDeltaService } from "./bundles/delta-service.js";
import { createLeaderForwarder } from "./cluster/forward-to-leader.js";
import { createLeadership, newReplicaId } from "./cluster/leadership.js";
import { dialHost, FleetServerConfigSchema, type FleetServerOptions, readTlsFiles } from "./config.js";
import { createCostService } from "./cost/cost-service.js";
import { createDeliveryCounter } from "./cost/delivery-counter.js";
import { subscribeDevicePlane } from "./devices/device-plane.js";
import { createDeviceService } from "./devices/device-service.js";
import { createBrokerLink } from "./health/broker-link.js";
import { livenessOf, readinessOf } from "./health/health-decision.js";
import { createPresenceTracker } from "./health/presence-tracker.js";
import { buildHttpApp } from "./http/app.js";
import { describeIssues } from "./http/validate.js";
import { loadOrCreateKeys } from "./keys/key-store.js";
import { createBrokerMetrics } from "./metrics/broker-metrics.js";
import { createBuildTracker } from "./registry/build-tracker.js";
import { createGovernanceService } from "./registry/governance-service.js";
import { createModelService } from "./registry/model-service.js";
import { createReReleaser } from "./registry/re-release.js";
import { createReleaseSigning } from "./registry/release-signing.js";
import { createRolloutExecutor } from "./rollout/executor.js";
import { createRolloutService } from "./rollout/rollout-service.js";
import { createRolloutScheduler } from "./rollout/scheduler.js";
import { createVariantAssignment } from "./rollout/variant-assignment.js";
import { createVariantRecorder } from "./rollout/variant-recorder.js";
import { createBuildRepo } from "./store/build-repo.js";
import { openStore } from "./store/db.js";
import { createDeviceRepo } from "./store/device-repo.js";
import { createGovernanceRepo } from "./store/governance-repo.js";
import { createModelRepo } from "./store/model-repo.js";
import { createPendingReleaseRepo } from "./store/pending-release-repo.js";
import { createRolloutRepo } from "./store/rollout-repo.js";
import { createVariantMeasurementRepo } from "./store/variant-measurement-repo.js";
import { createTelemetryIngest } from "./telemetry/telemetry-service.js";

export type { FleetServerOptions } from "./config.js";

export interface FleetServer {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:41234`. */
  httpUrl: string;
  /** The broker URL agents should use. */
  mqttUrl: string;
  adminToken: string;
  rootJsonPath: string;
  dataDir: string;
  topicPrefix: string;
  /** The HTTP API itself: in-process requests (fastify inject) and its route table (`declaredRoutes`). */
  app: FastifyInstance;
  /** The server's own MQTT client id (random per start; a takeover of it is logged and counted). */
  mqttClientId: string;
  /** This process's replica id and whether it executes rollouts now (issue 14, replicas). */
  replicaId: string;
  isLeader(): boolean;
  /** In-process connection to the embedded broker with the server's identity; null with an external one. */
  mqttInProcess: (() => Duplex) | null;
  stats: {
    /** Bundle payload bytes served to a device over MQTT chunks since start. */
    chunkBytesServed(deviceId: string): number;
  };
  close(): Promise<void>;
}

/** Composition root: builds every part and wires them with explicit dependencies. */
export async function startFleetServer(options: FleetServerOptions): Promise<FleetServer> {
  const { log: givenLog, ...rest } = options;
  const parsed = FleetServerConfigSchema.safeParse(rest);
  if (!parsed.success) throw new EdgeFleetError("VALIDATION_FAILED", describeIssues("options", parsed.error));
  const config = parsed.data;
  const log = givenLog ?? createLogger({ name: "fleet-server" });
  const clock = systemClock;
  const topics = createTopics(config.topicPrefix);
  const replicaId = newReplicaId();

  // Everything started so far, closed in reverse if a later step fails or on close().
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err }, "error during shutdown");
      }
    }
  };

  try {
    const keys = loadOrCreateKeys(config.dataDir, new Date(clock.now()), { offlineRelease: config.offlineRelease });
    const db = openStore(config);
    closers.push(() => {
      db.close();
    });
    // Which replica executes rollouts (issue 14): a lone server simply always holds the lease.
    let advertised: string | null = config.replicas.advertiseUrl ?? null;
    const leadership = createLeadership({
      log,
      clock,
      db,
      replicaId,
      leaseTtlMs: config.replicas.leaseTtlMs,
      advertiseUrl: () => advertised,
    });
    const deviceRepo = createDeviceRepo(db);
    // Per-device variant choice (issue 5): the profiles, and what devices measured per variant.
    const measurementRepo = createVariantMeasurementRepo(db);
    const profiles = await loadProfiles(config.profilesDir);
    const blobs = await createBlobStore(config.dataDir);
    const security = createSecurityService({
      log: log.child({ component: "security" }),
      clock,
      repo: createSecurityRepo(db),
      topics,
      bootstrapAdminToken: keys.adminToken,
    });
    // The server's view of its MQTT connection: health, readiness, presence, metrics (issue 20 §4).
    const brokerLink = createBrokerLink({
      clock,
      log: log.child({ component: "broker-link" }),
      kind: config.mqttUrl === undefined ? "embedded" : "external",
    });
    // Late-bound like the security service's: the broker starts after the device service.
    let brokerAccess: BrokerAccess | null = null;
    const devices = createDeviceService({
      log: log.child({ component: "devices" }),
      clock,
      devices: deviceRepo,
      isRevoked: security.isRevoked,
      onEnrolled: security.onEnrolled,
      admitToBroker: (id, password) => brokerAccess?.admit(id, password) ?? Promise.resolve(),
      variantMeasurements: (id) => measurementRepo.forDevice(id),
      presence: createPresenceTracker({ clock, link: brokerLink }),
    });
    const { tls, tlsCa } = readTlsFiles(config);
    const { mqttUrl, transport, clientId, mqttInProcess, embeddedAccess } = await connectBroker({
      config,
      topics,
      log,
      serverMqtt: keys.serverMqtt,
      authenticateDevice: devices.authenticate,
      closers,
      ...(tls ? { tls } : {}),
      ...(tlsCa ? { tlsCa } : {}),
    });
    if (embeddedAccess) brokerAccess = embeddedAccess;
    brokerLink.up();
    transport.onLink((e) => (e.up ? brokerLink.up() : brokerLink.down(e.error)));
    closers.push(() => {
      brokerLink.stop();
      return transport.close();
    });
    security.attachTransport(transport);
    if (config.mqttUrl !== undefined) {
      const access = config.mosquittoDynsec
        ? await dynsecBrokerAccess({ log: log.child({ component: "dynsec" }), topics, transport })
        : unmanagedBrokerAccess(log.child({ component: "broker" }));
      brokerAccess = access;
      // Revocations made while the broker was out of reach are applied when it is back.
      const reconcile = () =>
        access.reconcile(security.isRevoked).catch((err: unknown) => log.error({ err }, "broker reconcile failed"));
      await reconcile();
      brokerLink.onReconnect(() => void reconcile());
    }
    security.attachBroker((id) => brokerAccess?.revoke(id) ?? Promise.resolve());

    // The trust root chain (oldest first), retained so a device can walk rotations (architecture.md §3).
    await transport.publish(topics.trustRoot(), JSON.stringify(keys.rootChain), { qos: 1, retain: true });

    // Bundle bytes sent per bundle and device (issue 22, cost per prediction), kept in SQLite.
    const deliveries = createDeliveryCounter({ db, clock, log: log.child({ component: "cost" }) });
    closers.push(() => deliveries.close());
    const chunks = createChunkServer({
      log: log.child({ component: "chunks" }),
      clock,
      topics,
      transport,
      blobs,
      devices: deviceRepo,
      onServed: (deviceId, sha256, bytes) => deliveries.add(sha256, deviceId, "mqtt", bytes),
      ...(config.deviceBandwidthBytesPerSec !== undefined
        ? { bandwidthBytesPerSec: config.deviceBandwidthBytesPerSec }
        : {}),
    });
    closers.push(() => chunks.close());
    const modelRepo = createModelRepo(db);
    const pendingRepo = createPendingReleaseRepo(db);
    const registryLog = log.child({ component: "registry" });
    // Offline release signing: what waits for signatures, and how uploaded ones are checked and packed.
    const signing = createReleaseSigning({
      log: registryLog,
      models: modelRepo,
      pending: pendingRepo,
      blobs,
      root: () => keys.root,
    });
    const models = createModelService({
      log: registryLog,
      clock,
      models: modelRepo,
      pending: pendingRepo,
      blobs,
      releaseKey: keys.release,
    });
    // Lifecycle stages and approvals (issue 21): consulted by rollouts, moved by routes and rollouts.
    const governance = createGovernanceService({
      log: registryLog,
      clock,
      repo: createGovernanceRepo(db),
      hasVersion: (name, version) => modelRepo.hasVersion(name, version),
      listDevices: () => deviceRepo.list(),
    });
    const rolloutRepo = createRolloutRepo(db);
    const rolloutLog = log.child({ component: "rollouts" });
    const executor = createRolloutExecutor({
      log: rolloutLog,
      clock,
      topics,
      transport,
      devices: deviceRepo,
      rollouts: rolloutRepo,
      models: modelRepo,
      reRelease: createReReleaser({
        log: rolloutLog,
        clock,
        models: modelRepo,
        pending: pendingRepo,
        blobs,
        releaseKey: keys.release,
      }),
      director: keys.director,
      rootChain: keys.rootChain,
      variants: createVariantAssignment({ models: modelRepo, measurements: measurementRepo, profiles }),
      governance,
      deltas: createDeltaService({ store: blobs, log: rolloutLog.child({ component: "deltas" }) }),
    });
    const variantRecorder = createVariantRecorder({
      log: rolloutLog,
      clock,
      devices: deviceRepo,
      models: modelRepo,
      measurements: measurementRepo,
    });
    const scheduler = createRolloutScheduler({
      log: rolloutLog,
      clock,
      rollouts: rolloutRepo,
      executor,
      mayRun: leadership.isLeader,
    });
    const rollouts = createRolloutService({
      log: rolloutLog,
      clock,
      topics,
      transport,
      devices: deviceRepo,
      rollouts: rolloutRepo,
      models: modelRepo,
      executor,
      scheduler,
      isPendingSignature: (model, version, variant) =>
        pendingRepo.uploadsOf(model, version).some((p) => p.variant === variant),
      isRevoked: (id) => security.isRevoked(id),
      governance,
    });

    const telemetry = createTelemetryIngest({
      log: log.child({ component: "telemetry" }),
      clock,
      db,
      topics,
      transport,
      knownDevice: (id) => deviceRepo.get(id) !== null && !security.isRevoked(id),
      thresholds: config.telemetry.drift,
      retention: {
        maxRows: config.telemetry.retentionMaxRows,
        maxAgeMs: config.telemetry.retentionDays * 86_400_000,
      },
    });
    // Device messages (issue 14: with replicas each reaches one of them, MQTT shared subscriptions).
    await subscribeDevicePlane({
      transport,
      topics,
      ...(config.replicas.shareGroup ? { shareGroup: config.replicas.shareGroup } : {}),
      onReported: [devices.onReported, variantRecorder.onReported],
      onPresence: devices.onPresence,
      onEvent: [devices.onEvent, variantRecorder.onEvent],
      onChunkRequest: chunks.handle,
      onTelemetry: telemetry.onTelemetry,
      // Device news may move a rollout on (a verdict, a failure): plan right away, not at the next tick.
      poke: scheduler.poke,
    });
    // A broker that restarted without persistence lost every retained message: after a reconnect
    // the trust root and (by the leader) desired documents the broker lacks are retained again.
    // Retained presence and reports come back by themselves: mqtt.js subscribes again and the
    // broker re-sends them.
    brokerLink.onReconnect(() => {
      void transport
        .publish(topics.trustRoot(), JSON.stringify(keys.rootChain), { qos: 1, retain: true })
        .then(() => leadership.onBrokerReconnect())
        .catch((err: unknown) => log.warn({ err }, "re-retaining after a broker reconnect failed"));
    });

    const brokerMetrics = createBrokerMetrics(brokerLink);
    // Builds run on the replica that took the upload; another replica's are not interrupted while it lives.
    const builds = createBuildTracker({
      log: registryLog,
      clock,
      repo: createBuildRepo(db),
      owner: replicaId,
      ownerGone: leadership.isReplicaGone,
    });
    closers.push(() => builds.stop());
    const app = await buildHttpApp({
      log,
      adminToken: keys.adminToken,
      maxUploadBytes: config.maxUploadBytes,
      blobs,
      devices,
      deviceRepo,
      models,
      builds,
      signing,
      rollouts,
      governance,
      security,
      health: { liveness: () => livenessOf(brokerLink.state()), readiness: () => readinessOf(brokerLink.state()) },
      checkResponses: config.checkResponses,
      leader: createLeaderForwarder({ log: log.child({ component: "replicas" }), replicaId, leader: leadership }),
      deliveries,
      cost: createCostService({
        devices: deviceRepo,
        models: modelRepo,
        rollouts: rolloutRepo,
        deliveries,
        prices: config.prices ?? null,
      }),
      ...(tls ? { https: tls } : {}),
      telemetry: {
        ingest: telemetry,
        deviceExists: (id) => deviceRepo.get(id) !== null,
        metrics: async () => `${await telemetry.metricsText()}${await brokerMetrics.text()}`,
      },
    });
    await app.listen({ port: config.httpPort, host: config.httpHost });
    closers.push(() => app.close());
    const addr = app.server.address();
    const httpPort = typeof addr === "object" && addr ? addr.port : config.httpPort;
    const httpUrl = `${tls ? "https" : "http"}://${dialHost(config.httpHost)}:${httpPort}`;
    advertised ??= httpUrl;
    // Rollouts resume from what the store holds (the planner has no other memory) once this replica
    // holds the lease: at once when alone. Taking it first retains again every desired document the
    // broker lacks (a server may die between storing a document and publishing it).
    await leadership.start({
      transport,
      topics,
      scheduler,
      republishDesired: (retained) => rollouts.republishDesired(retained),
      freshBroker: config.mqttUrl === undefined,
    });
    closers.push(() => leadership.stop());
    log.info({ httpUrl, mqttUrl, dataDir: config.dataDir, replicaId }, "fleet server started");

    let closing: Promise<void> | null = null;
    return {
      httpUrl,
      mqttUrl,
      adminToken: keys.adminToken,
      rootJsonPath: keys.rootJsonPath,
      dataDir: config.dataDir,
      topicPrefix: config.topicPrefix,
      app,
      mqttClientId: clientId,
      replicaId,
      isLeader: leadership.isLeader,
      mqttInProcess,
      stats: { chunkBytesServed: (id) => chunks.bytesServed(id) },
      close() {
        closing ??= closeAll().then(() => log.info("fleet server stopped"));
        return closing;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
