import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSecurityRepo } from "../../../fleet-server/auth/security-repo.js";
import { createLeaseRepo } from "../../../fleet-server/cluster/lease-repo.js";
import { createDeliveryCounter } from "../../../fleet-server/cost/delivery-counter.js";
import { createBuildRepo } from "../../../fleet-server/store/build-repo.js";
import { type Db, migrate, openDatabase, openStore } from "../../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { createGovernanceRepo } from "../../../fleet-server/store/governance-repo.js";
import { MIGRATIONS } from "../../../fleet-server/store/migrations.js";
import { type BundleRow, createModelRepo } from "../../../fleet-server/store/model-repo.js";
import { createPendingReleaseRepo } from "../../../fleet-server/store/pending-release-repo.js";
import { createRolloutRepo } from "../../../fleet-server/store/rollout-repo.js";
import { createVariantMeasurementRepo } from "../../../fleet-server/store/variant-measurement-repo.js";
import { createTelemetryRepo } from "../../../fleet-server/telemetry/telemetry-repo.js";
import { createFakeClock } from "../../../shared/clock.js";
import type { TelemetryBatch, TelemetryRecord } from "../../../shared/schemas/telemetry.js";
import { createTestDatabase, postgresSkipReason } from "../../helpers/postgres.js";
import { makeTempDir } from "../../helpers/temp-dir.js";
import { definition } from "../../unit/rollout/fixtures.js";

/**
 * One contract over both store engines (issue 14): the same repositories and migrations on the
 * embedded SQLite file and on a real PostgreSQL (through the synchronous bridge), every repository
 * method at least once, with the paths where the engines differ most: transactions rolled back by
 * a throw (and savepoints), unique violations, the JSON tag filter, keyset paging, INSERT OR IGNORE
 * de-duplication, append-only triggers, and integer/real columns coming back as numbers.
 */
interface Opened {
  db: Db;
  /** Another connection to the same store (a second replica). */
  another(): Db;
  close(): Promise<void>;
}
const engines: { name: string; open(): Promise<Opened> }[] = [
  {
    name: "sqlite",
    async open() {
      const tmp = await makeTempDir("ef-store-");
      const dbs = [openDatabase(tmp.path)];
      return {
        db: dbs[0]!,
        another: () => dbs[dbs.push(openDatabase(tmp.path)) - 1]!,
        close: async () => {
          for (const d of dbs) d.close();
          await tmp.cleanup();
        },
      };
    },
  },
  ...(postgresSkipReason === null
    ? [
        {
          name: "postgres",
          async open(): Promise<Opened> {
            const t = await createTestDatabase(MIGRATED);
            const open = () => openStore({ dataDir: "unused", databaseUrl: t.url });
            const dbs = [open()];
            return {
              db: dbs[0]!,
              another: () => dbs[dbs.push(open()) - 1]!,
              close: async () => {
                for (const d of dbs) d.close();
                await t.drop();
              },
            };
          },
        },
      ]
    : []),
];

/** The store's migrations applied once per process; each test gets a copy. */
const MIGRATED = {
  key: "store",
  prepare(url: string) {
    openStore({ dataDir: "unused", databaseUrl: url }).close();
  },
};

const SHA = (c: string) => c.repeat(64);
const TS = "2026-01-01T00:00:00.000Z";
const MANIFEST = {
  _type: "manifest",
  model: { name: "vad", version: "1.0.0", variant: "fp32" },
  releaseCounter: 1,
  createdAt: TS,
  files: [{ path: "model.onnx", size: 1, sha256: SHA("a") }],
  inputs: [{ name: "x", datatype: "FP32", shape: [1, 4] }],
  outputs: [{ name: "y", datatype: "FP32", shape: [1, 2] }],
  opset: 17,
  compatibility: {},
};
const bundle = (sha: string, counter: number, variant = "fp32"): BundleRow =>
  ({
    sha256: sha,
    size: 10,
    name: "vad",
    version: "1.0.0",
    variant,
    releaseCounter: counter,
    manifest: { signed: { ...MANIFEST, releaseCounter: counter }, signatures: [] },
    createdAt: TS,
  }) as unknown as BundleRow;
const version = { name: "vad", version: "1.0.0", lineage: {}, samplesCount: 1, modelSha256: SHA("a"), createdAt: TS };
const reportedState = (id: string) => ({
  deviceId: id,
  agentVersion: "1.0.0",
  profile: "x64",
  arch: "x64",
  ts: TS,
  lastDesiredSeq: 0,
  models: [],
});
const inference = (seq: number, ok = true): TelemetryRecord => ({
  seq,
  ts: 1000 + seq,
  kind: "inference",
  model: "vad",
  version: "1.0.0",
  variant: "fp32",
  ok,
  computeMs: 1.5,
  totalMs: 2.25,
  nonFinite: 0,
  probe: false,
  source: "api",
});
const batch = (deviceId: string, records: TelemetryRecord[], dropped = 0): TelemetryBatch => ({
  v: 1,
  deviceId,
  firstSeq: records[0]!.seq,
  lastSeq: records[records.length - 1]!.seq,
  sentAt: 0,
  dropped,
  records,
});

describe.each(engines)("store contract on $name", (engine) => {
  let opened: Opened;
  let db: Db;
  beforeEach(async () => {
    opened = await engine.open();
    db = opened.db;
  });
  afterEach(async () => {
    await opened.close();
  });

  const seedDevices = (ids: string[], tags: (id: string) => Record<string, string> = () => ({})) => {
    const devices = createDeviceRepo(db);
    for (const id of ids)
      devices.insert({ id, passwordHash: "h", tags: tags(id), profile: id.endsWith("0") ? "pi" : null, now: TS });
    return devices;
  };
  const seedModel = () => {
    const models = createModelRepo(db);
    expect(models.insertVersion(version, [bundle(SHA("b"), 1), bundle(SHA("c"), 2, "int8")])).toBe(true);
    return models;
  };
  const seedRollout = (members: string[]) => {
    const rollouts = createRolloutRepo(db);
    rollouts.insert({
      id: "r-1",
      model: "vad",
      version: "1.0.0",
      variant: "fp32",
      bundleSha256: SHA("b"),
      target: { deviceIds: members },
      healthPolicy: {
        probationSeconds: 30,
        probationRequests: 0,
        maxErrorRatePercent: 5,
        maxP95LatencyRatio: 3,
        maxHostRestarts: 2,
      },
      createdAt: TS,
      definition: definition({ model: "vad", version: "1.0.0", target: { deviceIds: members } }),
      status: "running",
      state: { stage: 0, stageStartedAt: 0, soakStartedAt: null, servingMode: "active", reason: null },
    } as Parameters<typeof rollouts.insert>[0]);
    for (const id of members)
      rollouts.addDevice("r-1", {
        deviceId: id,
        desiredSeq: 1,
        assignedAt: TS,
        bundleSha256: SHA("b"),
        variant: "fp32",
        variantReason: "explicit",
      });
    return rollouts;
  };

  it("applies every migration once, and again is a no-op", () => {
    const versions = (
      db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as { version: number }[]
    ).map((r) => r.version);
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
    expect(typeof versions[0]).toBe("number");
    migrate(db);
    expect(db.prepare("SELECT COUNT(*) AS n FROM schema_migrations").get()).toEqual({ n: MIGRATIONS.length });
  });

  it("devices: insert once, read, keyset pages, profile/presence/tag filters, seqs, events", () => {
    const ids = Array.from({ length: 12 }, (_, i) => `dev-${String(i).padStart(2, "0")}`);
    // A tag key a JSON path would need to quote; every third device has it.
    const devices = seedDevices(
      ids,
      (id): Record<string, string> => (Number(id.slice(4)) % 3 === 0 ? { "site.a b": "x'y", z: "1" } : {}),
    );
    expect(devices.insert({ id: "dev-00", passwordHash: "other", tags: {}, profile: null, now: TS })).toBe(false);
    expect(devices.exists("dev-01")).toBe(true);
    expect(devices.exists("nope")).toBe(false);
    expect(devices.get("dev-00")).toMatchObject({ id: "dev-00", passwordHash: "h", profile: "pi", desiredSeq: 0 });
    expect(devices.get("nope")).toBeNull();
    expect(devices.list().map((d) => d.id)).toEqual(ids);
    expect(devices.listSummaries()).toHaveLength(12);
    expect(devices.getSummary("dev-03")?.tags).toEqual({ "site.a b": "x'y", z: "1" });

    const page1 = devices.listPage({ limit: 5 });
    const page2 = devices.listPage({ limit: 5, after: page1.at(-1)!.id });
    const page3 = devices.listPage({ limit: 5, after: page2.at(-1)!.id });
    expect([...page1, ...page2, ...page3].map((d) => d.id)).toEqual(ids);
    expect(page3).toHaveLength(2);
    expect(devices.listPage({ tags: { "site.a b": "x'y" } }).map((d) => d.id)).toEqual([
      "dev-00",
      "dev-03",
      "dev-06",
      "dev-09",
    ]);
    expect(devices.listPage({ tags: { "site.a b": "x'y", z: "2" } })).toEqual([]);
    expect(devices.listPage({ profile: "pi" }).map((d) => d.id)).toEqual(["dev-00", "dev-10"]);
    devices.setPresence("dev-02", "online", TS);
    expect(devices.listPage({ presence: "online", limit: 50 }).map((d) => d.id)).toEqual(["dev-02"]);

    devices.setReported("dev-02", reportedState("dev-02"), TS);
    expect(devices.get("dev-02")?.reported).toMatchObject({ deviceId: "dev-02" });
    expect(devices.nextSeq("dev-02")).toBe(1);
    expect(devices.nextSeq("dev-02")).toBe(2);
    expect(() => devices.nextSeq("nope")).toThrow(/vanished/);
    const desired = {
      signed: {
        _type: "desired",
        deviceId: "dev-02",
        seq: 2,
        issuedAt: TS,
        expires: TS,
        assignments: [],
        healthPolicy: undefined,
        rollout: null,
      },
      signatures: [],
    };
    devices.setDesired("dev-02", JSON.parse(JSON.stringify(desired)));
    expect(devices.get("dev-02")?.desired?.signed.seq).toBe(2);

    const ev = (eventSeq: number) => ({
      type: "update.transition" as const,
      deviceId: "dev-02",
      ts: TS,
      eventSeq,
      model: "vad",
      bundle: null,
      rolloutId: "r-1",
      from: "idle" as const,
      to: "downloading" as const,
    });
    expect(devices.insertEvent("dev-02", ev(1), TS)).toBe(true);
    expect(devices.insertEvent("dev-02", ev(1), TS)).toBe(false);
    expect(devices.insertEvent("dev-02", ev(2), TS)).toBe(true);
    expect(devices.recentEvents("dev-02", 10).map((e) => e.eventSeq)).toEqual([2, 1]);
    seedModel();
    seedRollout(["dev-02", "dev-03"]);
    const byMember = devices.recentEventsOfMembers("r-1", 1);
    expect([...byMember.keys()]).toEqual(["dev-02"]);
    expect(byMember.get("dev-02")!.map((e) => e.eventSeq)).toEqual([2]);
  });

  it("transactions: a throw rolls back, a nested throw rolls back only its savepoint, a unique violation throws", () => {
    const devices = seedDevices(["a"]);
    expect(() =>
      devices.transaction(() => {
        devices.insert({ id: "b", passwordHash: "h", tags: {}, profile: null, now: TS });
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(devices.exists("b")).toBe(false);
    devices.transaction(() => {
      devices.insert({ id: "c", passwordHash: "h", tags: {}, profile: null, now: TS });
      expect(() =>
        devices.transaction(() => {
          devices.insert({ id: "d", passwordHash: "h", tags: {}, profile: null, now: TS });
          throw new Error("inner");
        }),
      ).toThrow("inner");
    });
    expect(devices.exists("c")).toBe(true);
    expect(devices.exists("d")).toBe(false);
    // A unique violation keeps SQLite's code on both engines (callers were written against it).
    const security = createSecurityRepo(db);
    const token = { id: "t1", name: "n", role: "admin" as const, sha256: SHA("1"), now: TS, createdBy: "x" };
    security.insertToken(token);
    let code: unknown;
    try {
      security.insertToken({ ...token, id: "t2" });
    } catch (err) {
      code = (err as { code?: unknown }).code;
    }
    expect(code).toBe("SQLITE_CONSTRAINT_UNIQUE");
    // And the store is still usable after it.
    expect(security.tokenBySha256(SHA("1"))?.id).toBe("t1");
  });

  it("models, bundles, re-releases, pending releases and builds", () => {
    const models = seedModel();
    expect(models.insertVersion(version, [])).toBe(false);
    expect(models.hasVersion("vad", "1.0.0")).toBe(true);
    expect(models.getVersion("vad", "1.0.0")?.samplesCount).toBe(1);
    expect(models.versionsOf("vad")).toHaveLength(1);
    expect(models.listNames()).toEqual([{ name: "vad", versions: 1, latestVersion: "1.0.0", latestReleaseCounter: 2 }]);
    expect(models.bundlesOf("vad", "1.0.0").map((b) => b.releaseCounter)).toEqual([1, 2]);
    expect(models.bundle(SHA("b"))?.variant).toBe("fp32");
    expect(models.nextReleaseCounter("vad")).toBe(3);
    models.insertReRelease(bundle(SHA("d"), 3), SHA("b"));
    expect(models.anyBundle(SHA("d"))?.releaseCounter).toBe(3);
    expect(models.currentReReleaseOf(SHA("b"), "vad")?.sha256).toBe(SHA("d"));

    const pending = createPendingReleaseRepo(db);
    const p = {
      id: "p1",
      kind: "re-release" as const,
      name: "vad",
      version: "1.0.0",
      variant: "fp32",
      releaseCounter: 4,
      manifest: { ...MANIFEST, releaseCounter: 4 },
      payload: ["model.onnx"],
      originSha256: SHA("b"),
      createdAt: TS,
    };
    pending.insert(p as unknown as Parameters<typeof pending.insert>[0]);
    expect(models.nextReleaseCounter("vad")).toBe(5);
    expect(pending.get("p1")?.kind).toBe("re-release");
    expect(pending.list()).toHaveLength(1);
    expect(pending.uploadsOf("vad", "1.0.0")).toEqual([]);
    expect(pending.reReleaseOf(SHA("b"))?.id).toBe("p1");
    expect(pending.setSignatures("p1", [])).toBe(true);
    pending.publish("p1", bundle(SHA("e"), 4), { signed: { ...MANIFEST, releaseCounter: 4 }, signatures: [] } as never);
    expect(pending.get("p1")).toBeNull();
    expect(models.anyBundle(SHA("e"))?.releaseCounter).toBe(4);

    const builds = createBuildRepo(db);
    builds.save({ id: "b1", status: "running", createdAt: TS }, "replica-1");
    builds.save({ id: "b2", status: "failed", createdAt: TS, endedAt: "2026-01-01T00:00:01.000Z" });
    builds.save({ id: "b3", status: "succeeded", createdAt: TS, endedAt: "2026-01-01T00:00:02.000Z" });
    expect(builds.get("b2")).toMatchObject({ id: "b2", status: "failed" });
    expect(builds.running()).toEqual([{ doc: { id: "b1", status: "running", createdAt: TS }, owner: "replica-1" }]);
    expect(builds.prune({ maxFinished: 1, maxAgeMs: 1e12 }, Date.parse(TS))).toBe(1);
    expect(builds.get("b2")).toBeNull();
    expect(builds.get("b3")).not.toBeNull();
  });

  it("rollouts: members, phases, outcomes, events, holders, in one transaction", () => {
    seedDevices(["m1", "m2", "m3"]);
    seedModel();
    const rollouts = seedRollout(["m1", "m2"]);
    expect(rollouts.get("r-1")?.status).toBe("running");
    expect(rollouts.list()).toHaveLength(1);
    expect(rollouts.listByStatus(["running", "paused"])).toHaveLength(1);
    rollouts.transaction(() => {
      rollouts.setPhase("r-1", "m1", "probation", TS);
      rollouts.setOutcome("r-1", "m1", "failed", "crash", TS);
      rollouts.setOutcome("r-1", "m1", "passed", "late", TS);
      rollouts.setRollback("r-1", "m1", SHA("b"), 5);
      rollouts.setDesiredSeq("r-1", "m2", 7);
      rollouts.addEvent("r-1", TS, { type: "created", detail: { strategy: "canary", stages: 2 } });
    });
    expect(() =>
      rollouts.transaction(() => {
        rollouts.addDevice("r-1", {
          deviceId: "m3",
          desiredSeq: 1,
          assignedAt: TS,
          bundleSha256: SHA("b"),
          variant: "fp32",
          variantReason: "explicit",
        });
        rollouts.setState("r-1", "paused", {
          stage: 1,
          stageStartedAt: 5,
          soakStartedAt: null,
          servingMode: "active",
          reason: "x",
        } as never);
        throw new Error("abort");
      }),
    ).toThrow("abort");
    expect(rollouts.get("r-1")?.status).toBe("running");
    const members = rollouts.devices("r-1");
    expect(members.map((m) => m.deviceId)).toEqual(["m1", "m2"]);
    expect(members[0]).toMatchObject({
      outcome: "failed",
      outcomeReason: "crash",
      rollbackSha256: SHA("b"),
      desiredSeq: 5,
    });
    expect(members[1]!.desiredSeq).toBe(7);
    expect(rollouts.acknowledgeFailures("r-1")).toBe(1);
    expect(rollouts.devices("r-1")[0]!.acknowledged).toBe(true);
    rollouts.setState("r-1", "paused", {
      stage: 1,
      stageStartedAt: 5,
      soakStartedAt: null,
      servingMode: "active",
      reason: "x",
    } as never);
    expect(rollouts.get("r-1")?.state.stage).toBe(1);
    expect(
      rollouts
        .holders("vad", ["paused"])
        .map((h) => h.deviceId)
        .sort(),
    ).toEqual(["m1", "m2"]);
    expect(rollouts.events("r-1", 10).map((e) => e.type)).toEqual(["created"]);
    // The unique (rollout, device) key: a second membership is refused.
    expect(() => seedRollout(["m1"])).toThrow();
  });

  it("telemetry: INSERT OR IGNORE de-duplicates a re-sent batch; counters, drift, alerts, trim", () => {
    seedDevices(["t1"]);
    seedModel();
    seedRollout(["t1"]);
    const telemetry = createTelemetryRepo(db);
    const records = Array.from({ length: 100 }, (_, i) => inference(i + 1, i % 10 !== 0));
    const first = telemetry.ingest("t1", batch("t1", records), () => "stage-0", 5000);
    expect(first).toMatchObject({ stored: 100, duplicates: 0 });
    expect(first.inferences).toHaveLength(100);
    const again = telemetry.ingest("t1", batch("t1", [...records.slice(90), inference(101)], 3), () => "stage-0", 6000);
    expect(again).toMatchObject({ stored: 1, duplicates: 10 });
    const drift = {
      seq: 102,
      ts: 2000,
      kind: "drift" as const,
      model: "vad",
      version: "1.0.0",
      features: [
        {
          name: "f",
          source: "input" as const,
          kind: "continuous" as const,
          n: 1,
          counts: [1],
          expected: [1],
          psi: 0.5,
          ks: null,
        },
      ],
    };
    expect(telemetry.ingest("t1", batch("t1", [drift]), () => "stage-0", 7000).driftTouched).toHaveLength(1);
    // Quotes, backslashes, braces and non-ASCII survive PostgreSQL's array path (one INSERT per batch).
    const capture = {
      seq: 103,
      ts: 1,
      kind: "capture" as const,
      model: "vad",
      version: "1.0.0",
      truncated: false,
      inputs: { x: { shape: [3], data: ['a"b', "c\\d", "{e,f} ü\n"] } },
      outputs: {},
    };
    expect(telemetry.ingest("t1", batch("t1", [capture]), () => "stage-0", 7000)).toMatchObject({ stored: 1 });
    expect(telemetry.records("t1", { kind: "capture", limit: 5 }).records).toEqual([{ ...capture, cohort: "stage-0" }]);
    expect(telemetry.deviceStats("t1")).toEqual({
      highSeq: 103,
      stored: 103,
      duplicates: 10,
      batches: 4,
      rejected: 0,
      lastRejection: null,
      deviceDropped: 3,
      lastBatchAt: 7000,
    });
    telemetry.reject("t1", "bad");
    expect(telemetry.deviceStats("t1")).toMatchObject({ rejected: 1, lastRejection: "bad" });
    expect(telemetry.rolloutStage("t1", "vad", "1.0.0")).toBe(0);
    expect(telemetry.rolloutStage("t1", "vad", "9.9.9")).toBeNull();
    const page = telemetry.records("t1", { kind: "inference", afterSeq: 95, limit: 3 });
    expect(page.total).toBe(101);
    expect(page.records.map((r) => r.seq)).toEqual([96, 97, 98]);
    const rows = telemetry.inferenceRows("vad", "1.0.0");
    expect(rows).toHaveLength(101);
    expect(rows[0]).toMatchObject({ cohort: "stage-0", deviceId: "t1", latencyMs: 2.25, nonFinite: 0 });
    expect(telemetry.driftLatest("vad", "1.0.0", "stage-0")[0]?.features[0]?.psi).toBe(0.5);
    expect(telemetry.driftLatest("vad", "1.0.0")).toHaveLength(1);

    const alert = {
      ts: 1,
      type: "raised",
      model: "vad",
      version: "1.0.0",
      cohort: "stage-0",
      feature: "f",
      drift: "psi",
      metric: "psi",
      value: 0.5,
      threshold: 0.2,
      devices: 1,
      samples: 10,
    };
    telemetry.saveAlert(alert, true, { value: 0.5 });
    expect(telemetry.alertState("vad", "1.0.0", "stage-0", "f")).toBe(true);
    telemetry.saveAlert(alert, null, { value: 0.6 });
    expect(telemetry.alertState("vad", "1.0.0", "stage-0", "f")).toBe(true);
    expect(telemetry.alerts({ model: "vad", version: "1.0.0" }, 10)).toMatchObject([{ id: 1, value: 0.5 }]);
    expect(telemetry.count()).toBe(103);
    // 100 received before 5500 go by age, then the oldest two of the three left by count.
    expect(telemetry.trim(1, 5500)).toBe(102);
    expect(telemetry.count()).toBe(1);
  });

  it("security: tokens, append-only audit log, one-time enrollment tokens, revocations, broker hashes", () => {
    const security = createSecurityRepo(db);
    security.insertToken({ id: "t1", name: "n", role: "viewer", sha256: SHA("1"), now: TS, createdBy: "x" });
    expect(security.listTokens().map((t) => t.id)).toEqual(["t1"]);
    expect(security.revokeToken("t1", TS)).toBe(true);
    expect(security.revokeToken("t1", TS)).toBe(false);
    const audit = {
      at: TS,
      actor: "a",
      role: null,
      method: "GET",
      route: "/v1/x",
      path: "/v1/x",
      status: 200,
      errorCode: null,
      remote: null,
    };
    security.appendAudit(audit);
    security.appendAudit({ ...audit, status: 404 });
    expect(security.listAudit(1, 10)).toEqual([{ ...audit, seq: 2, status: 404 }]);
    expect(() => db.exec("UPDATE audit_log SET actor = 'b'")).toThrow(/append-only/);
    expect(() => db.exec("DELETE FROM audit_log")).toThrow(/append-only/);
    security.insertEnrollmentToken({
      id: "e1",
      sha256: SHA("2"),
      deviceId: null,
      tags: { a: "b" },
      profile: null,
      expiresAt: "2999-01-01T00:00:00.000Z",
      now: TS,
    });
    expect(security.usableEnrollmentToken(SHA("2"), TS)?.tags).toEqual({ a: "b" });
    // Check-then-spend in one transaction (security-service): a throw after the spend undoes it.
    expect(() =>
      security.transaction(() => {
        security.spendEnrollmentToken("e1", "d1", TS);
        throw new Error("enrollment failed");
      }),
    ).toThrow("enrollment failed");
    expect(security.spendEnrollmentToken("e1", "d1", TS)).toBe(true);
    expect(security.spendEnrollmentToken("e1", "d1", TS)).toBe(false);
    expect(security.usableEnrollmentToken(SHA("2"), TS)).toBeNull();
    security.putBrokerCredential("d1", "$7$a");
    security.putBrokerCredential("d1", "$7$b");
    security.putBrokerCredential("d2", "$7$c");
    expect(security.revokeDevice("d2", TS, null)).toBe(true);
    expect(security.revokeDevice("d2", TS, null)).toBe(false);
    expect(security.isRevoked("d2")).toBe(true);
    expect(security.activeBrokerCredentials()).toEqual([{ deviceId: "d1", mosquittoHash: "$7$b" }]);
  });

  it("governance, variant measurements and bundle delivery counts", () => {
    seedDevices(["g1"]);
    seedModel();
    const gov = createGovernanceRepo(db);
    gov.recordPush("vad", "1.0.0", "alice", TS);
    expect(gov.lifecycle("vad", "1.0.0")).toEqual({ stage: "candidate", pushedBy: "alice" });
    gov.transaction(() =>
      gov.setStage("vad", "1.0.0", {
        from: "candidate",
        to: "approved",
        cause: "approvals",
        actor: "bob",
        comment: "",
        at: TS,
      } as never),
    );
    expect(gov.versionsIn(["approved"])).toEqual([{ name: "vad", version: "1.0.0", stage: "approved" }]);
    expect(gov.history("vad", "1.0.0")).toHaveLength(1);
    gov.addReview("vad", "1.0.0", { actor: "bob", decision: "approve", comment: "ok", at: TS });
    expect(gov.reviews("vad", "1.0.0")).toHaveLength(1);
    gov.setPolicy("vad", { requiredApprovals: 2, maxUnapprovedPercent: 5, updatedAt: TS, updatedBy: "alice" });
    gov.setPolicy("vad", { requiredApprovals: 1, maxUnapprovedPercent: 10, updatedAt: TS, updatedBy: "alice" });
    expect(gov.policy("vad")).toMatchObject({ requiredApprovals: 1, maxUnapprovedPercent: 10 });
    expect(() => db.exec("DELETE FROM version_reviews")).toThrow(/append-only/);

    const measurements = createVariantMeasurementRepo(db);
    const m = {
      deviceId: "g1",
      model: "vad",
      variant: "int8",
      version: "1.0.0",
      sha256: SHA("c"),
      p50Ms: 1.25,
      p95Ms: null,
      requests: 3,
      measuredAt: TS,
    };
    measurements.upsert(m);
    measurements.upsert({ ...m, p50Ms: 0.75 });
    expect(measurements.get("g1", "vad", "int8")).toEqual({ ...m, p50Ms: 0.75 });
    expect(measurements.forDevice("g1")).toHaveLength(1);
    expect(measurements.forDevice("g1", "other")).toEqual([]);

    const counter = createDeliveryCounter({ db, clock: createFakeClock(0), log: pino({ level: "silent" }) });
    counter.add(SHA("b"), "g1", "mqtt", 100);
    counter.flush();
    counter.add(SHA("b"), "g1", "mqtt", 50);
    expect(counter.ofModel("vad")).toEqual([
      { deviceId: "g1", sha256: SHA("b"), channel: "mqtt", version: "1.0.0", bytes: 150 },
    ]);
    counter.close();
  });

  it("leases (replicas): one holder at a time across two connections; renewal keeps the epoch, a successor bumps it", () => {
    const a = createLeaseRepo(db);
    const b = createLeaseRepo(opened.another());
    expect(a.claim("rollouts", "r1", "http://r1", 1000, 0)).toBe(true);
    expect(b.claim("rollouts", "r2", "http://r2", 2000, 500)).toBe(false);
    expect(a.claim("rollouts", "r1", "http://r1", 3000, 900)).toBe(true);
    expect(b.get("rollouts")).toEqual({ holder: "r1", holderUrl: "http://r1", epoch: 1, expiresAt: 3000 });
    // Expired: the other connection takes it over, once.
    expect(b.claim("rollouts", "r2", "http://r2", 6000, 3000)).toBe(true);
    expect(a.claim("rollouts", "r1", "http://r1", 6000, 3001)).toBe(false);
    expect(a.get("rollouts")).toMatchObject({ holder: "r2", epoch: 2 });
    b.release("rollouts", "r2");
    expect(a.claim("rollouts", "r1", null, 9000, 3002)).toBe(true);
  });
});
