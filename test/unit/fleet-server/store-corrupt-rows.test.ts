import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { createBuildRepo } from "../../../fleet-server/store/build-repo.js";
import { openDatabase, type SqliteDb } from "../../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../../fleet-server/store/device-repo.js";
import { createModelRepo } from "../../../fleet-server/store/model-repo.js";
import { createPendingReleaseRepo } from "../../../fleet-server/store/pending-release-repo.js";
import { createRolloutRepo } from "../../../fleet-server/store/rollout-repo.js";
import { createTelemetryRepo } from "../../../fleet-server/telemetry/telemetry-repo.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import { definition } from "../rollout/fixtures.js";

/**
 * Issue 23, rows parsed at the store: every JSON column and enum is decoded with its schema when
 * read, so a row written wrong (here with raw SQL into a real SQLite file) is one INTERNAL error
 * naming the table, the row's key and the column, never a silently wrong type handed upwards.
 * The variant_measurements table has neither JSON nor enum columns, so it has no case here.
 */
const tmp = mkdtempSync(join(tmpdir(), "corrupt-rows-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SHA = "a".repeat(64);
/** A valid unsigned manifest, so each case corrupts exactly one column. */
const MANIFEST = {
  _type: "manifest",
  model: { name: "vad", version: "1.0.0", variant: "fp32" },
  releaseCounter: 1,
  createdAt: "2026-01-01T00:00:00.000Z",
  files: [{ path: "model.onnx", size: 1, sha256: SHA }],
  inputs: [{ name: "x", datatype: "FP32", shape: [1, 4] }],
  outputs: [{ name: "y", datatype: "FP32", shape: [1, 2] }],
  opset: 17,
  compatibility: {},
};
let db: SqliteDb;
let n = 0;
beforeEach(() => {
  db = openDatabase(join(tmp, String(n++)));
  // Rows below are written one table at a time; only decoding is under test, not referential integrity.
  db.pragma("foreign_keys = OFF");
});

function thrown(read: () => unknown): EdgeFleetError {
  try {
    read();
  } catch (err) {
    if (err instanceof EdgeFleetError) return err;
    throw new Error(`expected an EdgeFleetError, got ${String(err)}`);
  }
  throw new Error("expected the read to fail, it returned a value");
}

function expectCorrupt(read: () => unknown, table: string, key: string, column: string): string {
  const err = thrown(read);
  expect(err.code).toBe("INTERNAL");
  expect(err.message).toContain(`corrupt row in table ${table} (${key}): column ${column} `);
  expect(err.details).toEqual({ table, key, column });
  return err.message;
}

const insertRollout = (over: Record<string, string | null> = {}) => {
  const r = {
    id: "r-1",
    model: "vad",
    version: "1.0.0",
    variant: "fp32",
    bundle_sha256: SHA,
    target: '{"deviceIds":["d-1"]}',
    health_policy: "{}",
    created_at: "2026-01-01T00:00:00.000Z",
    definition: JSON.stringify(definition({ model: "vad", version: "1.0.0", target: { deviceIds: ["d-1"] } })),
    status: "running",
    state: '{"stage":0,"stageStartedAt":0,"soakStartedAt":null,"servingMode":"active","reason":null}',
    ...over,
  };
  db.prepare(
    `INSERT INTO rollouts (${Object.keys(r).join(", ")}) VALUES (${Object.keys(r)
      .map(() => "?")
      .join(", ")})`,
  ).run(...Object.values(r));
};

describe("rollout repo decodes its rows", () => {
  it("a valid row reads back typed (the control case)", () => {
    insertRollout();
    const row = createRolloutRepo(db).get("r-1");
    expect(row?.status).toBe("running");
    expect(row?.definition.stages.length).toBeGreaterThan(0);
    expect(row?.target).toEqual({ deviceIds: ["d-1"] });
    // health_policy '{}' is decoded with the schema's defaults.
    expect(row?.healthPolicy.probationSeconds).toBe(30);
  });

  it.each([
    ["status", { status: "runing" }, "expected one of"],
    // What migration 2 gave rollouts from before staged rollouts; 0.1.0 never wrote one (decisions.md).
    ["status", { status: "legacy" }, "expected one of"],
    ["definition", { definition: null }, "is NULL"],
    ["state", { state: null }, "is NULL"],
    ["target", { target: '{"deviceIds":"d-1"}' }, "at deviceIds"],
    ["health_policy", { health_policy: '{"maxErrorRatePercent":500}' }, "at maxErrorRatePercent"],
    ["definition", { definition: "{not json" }, "is not JSON"],
    [
      "state",
      { state: '{"stage":-1,"stageStartedAt":0,"soakStartedAt":null,"servingMode":"active","reason":null}' },
      "at stage",
    ],
  ])("a corrupt %s is an INTERNAL error naming it", (column, over, problem) => {
    insertRollout(over);
    const repo = createRolloutRepo(db);
    expect(expectCorrupt(() => repo.get("r-1"), "rollouts", "id=r-1", column)).toContain(problem);
    expectCorrupt(() => repo.list(), "rollouts", "id=r-1", column);
  });

  it.each([
    ["phase", "UPDATE rollout_devices SET phase = 'installing'"],
    ["previous", `UPDATE rollout_devices SET previous = '{"sha256":"${SHA}","version":"1.0.0"}'`],
    ["outcome", "UPDATE rollout_devices SET outcome = 'maybe'"],
    // NULL only in members from before migration 5, which 0.1.0 never wrote (decisions.md).
    ["bundle_sha256", "UPDATE rollout_devices SET bundle_sha256 = NULL"],
    ["variant", "UPDATE rollout_devices SET variant = 'int4'"],
  ])("a member's corrupt %s is an INTERNAL error naming rollout and device", (column, sql) => {
    insertRollout();
    createRolloutRepo(db).addDevice("r-1", {
      deviceId: "d-1",
      desiredSeq: 1,
      assignedAt: "2026-01-01T00:00:00.000Z",
      bundleSha256: SHA,
      variant: "fp32",
      variantReason: "explicit",
    });
    db.exec(sql);
    expectCorrupt(
      () => createRolloutRepo(db).devices("r-1"),
      "rollout_devices",
      "rollout_id=r-1, device_id=d-1",
      column,
    );
  });

  it("a history event whose detail is not an object is an INTERNAL error", () => {
    insertRollout();
    db.prepare("INSERT INTO rollout_events (rollout_id, ts, type, detail) VALUES ('r-1', 't', 'created', '[1]')").run();
    expectCorrupt(() => createRolloutRepo(db).events("r-1", 10), "rollout_events", "rollout_id=r-1, seq=1", "detail");
  });

  // Each kind of event has its own detail schema (shared/http/rollout-history.ts).
  it.each([
    ["detail", "stage-advanced", '{"reason":"x"}', "at detail.stage"],
    ["detail", "paused", '{"stage":0,"by":"someone"}', "does not match its schema"],
    ["detail", "created", '{"strategy":"canary","stages":2,"extra":1}', "does not match its schema"],
    ["type", "exploded", '{"stage":0}', "not a known rollout event type"],
  ])("a history event with a wrong %s for its kind (%s) is an INTERNAL error", (column, type, detail, problem) => {
    insertRollout();
    db.prepare("INSERT INTO rollout_events (rollout_id, ts, type, detail) VALUES ('r-1', 't', ?, ?)").run(type, detail);
    const message = expectCorrupt(
      () => createRolloutRepo(db).events("r-1", 10),
      "rollout_events",
      "rollout_id=r-1, seq=1",
      column,
    );
    expect(message).toContain(problem);
  });

  it("history events come back typed by kind, as written", () => {
    insertRollout();
    const repo = createRolloutRepo(db);
    repo.addEvent("r-1", "t1", { type: "created", detail: { strategy: "canary", stages: 3 } });
    repo.addEvent("r-1", "t2", { type: "paused", detail: { stage: 1, reason: "gate failedPercent breached" } });
    repo.addEvent("r-1", "t3", {
      type: "rolled-back",
      detail: { stage: 1, sidesRemoved: 0, reReleases: [{ sha256: SHA, version: "1.0.0", releaseCounter: 3 }] },
    });
    const events = repo.events("r-1", 10);
    expect(events.map((e) => e.type)).toEqual(["created", "paused", "rolled-back"]);
    const rolled = events[2]!;
    if (rolled.type !== "rolled-back") throw new Error("narrowing");
    expect(rolled.detail.reReleases[0]!.releaseCounter).toBe(3);
  });
});

describe("device repo decodes its rows", () => {
  const add = () =>
    createDeviceRepo(db).insert({ id: "d-1", passwordHash: "x", tags: { site: "a" }, profile: null, now: "t" });
  it.each([
    ["tags", `UPDATE devices SET tags = '{"site":1}'`],
    ["presence", "UPDATE devices SET presence = 'away'"],
    ["reported", `UPDATE devices SET reported = '{"deviceId":"d-1"}'`],
    ["desired", `UPDATE devices SET desired = '{"signed":{"_type":"desired"},"signatures":[]}'`],
  ])("a corrupt %s is an INTERNAL error naming the device", (column, sql) => {
    add();
    db.exec(sql);
    expectCorrupt(() => createDeviceRepo(db).get("d-1"), "devices", "id=d-1", column);
    expectCorrupt(() => createDeviceRepo(db).list(), "devices", "id=d-1", column);
  });

  it("a stored event body that is no event is an INTERNAL error naming device and seq", () => {
    add();
    db.prepare(
      "INSERT INTO device_events (device_id, event_seq, type, ts, body, received_at) VALUES ('d-1', 7, 'x', 't', '{}', 't')",
    ).run();
    expectCorrupt(
      () => createDeviceRepo(db).recentEvents("d-1", 5),
      "device_events",
      "device_id=d-1, event_seq=7",
      "body",
    );
  });
});

describe("model repo decodes its rows", () => {
  it.each(["bundles", "re_releases"])("a %s manifest that is not a signed manifest is an INTERNAL error", (table) => {
    const extra = table === "re_releases" ? ", origin_sha256" : "";
    db.prepare(
      `INSERT INTO ${table} (sha256, size, name, version, variant, release_counter, manifest, created_at${extra})
       VALUES (?, 1, 'vad', '1.0.0', 'fp32', 1, '{"signed":{}}', 't'${extra ? ", ?" : ""})`,
    ).run(SHA, ...(extra ? [SHA] : []));
    expectCorrupt(() => createModelRepo(db).anyBundle(SHA), table, `sha256=${SHA}`, "manifest");
  });

  it("a lineage that is not an object is an INTERNAL error naming the version", () => {
    db.prepare(
      "INSERT INTO model_versions (name, version, lineage, samples_count, model_sha256, created_at) VALUES ('vad', '1.0.0', '[]', 1, ?, 't')",
    ).run(SHA);
    expectCorrupt(
      () => createModelRepo(db).getVersion("vad", "1.0.0"),
      "model_versions",
      "name=vad, version=1.0.0",
      "lineage",
    );
  });
});

describe("pending-release repo decodes its rows", () => {
  it.each([
    ["kind", { kind: "rollback" }],
    ["manifest", { manifest: '{"_type":"manifest"}' }],
    ["payload", { payload: '"model.onnx"' }],
    ["signatures", { signatures: '[{"keyid":"k"}]' }],
  ])("a corrupt %s is an INTERNAL error naming the release", (column, over) => {
    const r = {
      id: "p-1",
      kind: "upload",
      name: "vad",
      version: "1.0.0",
      variant: "fp32",
      release_counter: "1",
      manifest: JSON.stringify(MANIFEST),
      payload: "[]",
      origin_sha256: null,
      created_at: "t",
      signatures: "[]",
      ...over,
    };
    db.prepare(
      `INSERT INTO pending_releases (${Object.keys(r).join(", ")}) VALUES (${Object.keys(r)
        .map(() => "?")
        .join(", ")})`,
    ).run(...Object.values(r));
    expectCorrupt(() => createPendingReleaseRepo(db).get("p-1"), "pending_releases", "id=p-1", column);
  });
});

describe("build repo decodes its rows", () => {
  it("a build document that is not a JSON object is an INTERNAL error naming the build", () => {
    db.prepare("INSERT INTO model_builds (id, status, created_at, state) VALUES ('b-1', 'running', 't', 'nope')").run();
    const repo = createBuildRepo(db);
    expectCorrupt(() => repo.get("b-1"), "model_builds", "id=b-1", "state");
    expectCorrupt(() => repo.running(), "model_builds", "id=b-1", "state");
  });
});

describe("telemetry repo decodes its rows", () => {
  it("a stored record that is no telemetry record is an INTERNAL error naming device and seq", () => {
    db.prepare(
      `INSERT INTO telemetry_records (device_id, seq, kind, ts, body, received_at)
       VALUES ('d-1', 4, 'inference', 0, '{"kind":"inference"}', 0)`,
    ).run();
    expectCorrupt(
      () => createTelemetryRepo(db).records("d-1", { limit: 10 }),
      "telemetry_records",
      "device_id=d-1, seq=4",
      "body",
    );
  });

  it("drift features that are not feature reports are an INTERNAL error", () => {
    db.prepare(
      `INSERT INTO telemetry_drift_latest (device_id, model, version, cohort, seq, features, ts)
       VALUES ('d-1', 'vad', '1.0.0', 'c', 1, '[{"feature":1}]', 0)`,
    ).run();
    expectCorrupt(
      () => createTelemetryRepo(db).driftLatest("vad", "1.0.0"),
      "telemetry_drift_latest",
      "model=vad, version=1.0.0, device_id=d-1",
      "features",
    );
  });
});
