import { loadavg } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { type Db, openDatabase, openStore } from "../../fleet-server/store/db.js";
import { createDeviceRepo } from "../../fleet-server/store/device-repo.js";
import { translateStatement } from "../../fleet-server/store/pg-sql.js";
import { createRolloutRepo } from "../../fleet-server/store/rollout-repo.js";
import { createTelemetryRepo } from "../../fleet-server/telemetry/telemetry-repo.js";
import type { TelemetryBatch, TelemetryRecord } from "../../shared/schemas/telemetry.js";
import { createTestDatabase } from "../../test/helpers/postgres.js";
import { makeTempDir } from "../../test/helpers/temp-dir.js";
import { definition } from "../../test/unit/rollout/fixtures.js";

/**
 * `npm run bench -- store-engines` (issue 14): what typical repository calls cost on the embedded
 * SQLite store and on PostgreSQL through the synchronous bridge (one worker-thread round trip per
 * statement, the main thread blocked meanwhile), and — the anchor, same run, same database — the
 * raw async `pg` client issuing the same statements, so the bridge's own overhead is the
 * difference. PostgreSQL is a private cluster on loopback (test/helpers/postgres.ts), fsync off.
 *
 * Each figure is the median of `n` calls in µs. One call of the bridge blocks the event loop for
 * its whole duration: these medians are also the event-loop stall per call.
 */
const DEVICES = 1000;
const TS = "2026-01-01T00:00:00.000Z";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function timeSync(n: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(50, n); i++) fn(i);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    fn(i + n);
    xs.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return Math.round(median(xs) * 10) / 10;
}
async function timeAsync(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(50, n); i++) await fn(i);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn(i + n);
    xs.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return Math.round(median(xs) * 10) / 10;
}

const id = (i: number) => `dev-${String(i % DEVICES).padStart(5, "0")}`;
const record = (seq: number): TelemetryRecord => ({
  seq,
  ts: seq,
  kind: "inference",
  model: "vad",
  version: "1.0.0",
  variant: "fp32",
  ok: true,
  computeMs: 1,
  totalMs: 2,
  nonFinite: 0,
  probe: false,
  source: "api",
});
const batchOf = (i: number): TelemetryBatch => {
  const records = Array.from({ length: 100 }, (_, k) => record(i * 100 + k + 1));
  return {
    v: 1,
    deviceId: "dev-00000",
    firstSeq: records[0]!.seq,
    lastSeq: records[99]!.seq,
    sentAt: 0,
    dropped: 0,
    records,
  };
};

function seed(db: Db): void {
  const devices = createDeviceRepo(db);
  devices.transaction(() => {
    for (let i = 0; i < DEVICES; i++)
      devices.insert({ id: id(i), passwordHash: "h", tags: { site: `s${i % 7}` }, profile: null, now: TS });
  });
  db.prepare(
    "INSERT INTO model_versions (name, version, lineage, samples_count, model_sha256, created_at) VALUES ('vad', '1.0.0', '{}', 1, ?, ?)",
  ).run("a".repeat(64), TS);
  db.prepare(
    "INSERT INTO bundles (sha256, size, name, version, variant, release_counter, manifest, created_at) VALUES (?, 1, 'vad', '1.0.0', 'fp32', 1, '{}', ?)",
  ).run("b".repeat(64), TS);
  const rollouts = createRolloutRepo(db);
  rollouts.insert({
    id: "r-1",
    model: "vad",
    version: "1.0.0",
    variant: "fp32",
    bundleSha256: "b".repeat(64),
    target: { tags: {} },
    healthPolicy: {
      probationSeconds: 30,
      probationRequests: 0,
      maxErrorRatePercent: 5,
      maxP95LatencyRatio: 3,
      maxHostRestarts: 2,
    },
    createdAt: TS,
    definition: definition({ model: "vad", version: "1.0.0" }),
    status: "running",
    state: { stage: 0, stageStartedAt: 0, soakStartedAt: null, servingMode: "active", reason: null },
  } as Parameters<typeof rollouts.insert>[0]);
  rollouts.transaction(() => {
    for (let i = 0; i < DEVICES; i++)
      rollouts.addDevice("r-1", {
        deviceId: id(i),
        desiredSeq: 1,
        assignedAt: TS,
        bundleSha256: "b".repeat(64),
        variant: "fp32",
        variantReason: "explicit",
      });
  });
}

/** The four typical calls through the repositories, on either engine. */
function repoFigures(db: Db, n: number) {
  const devices = createDeviceRepo(db);
  const rollouts = createRolloutRepo(db);
  const telemetry = createTelemetryRepo(db);
  const cohort = () => "stage-0";
  let batch = 0;
  return {
    deviceGetUs: timeSync(n, (i) => devices.get(id(i * 37))),
    devicePage50Us: timeSync(n, (i) => devices.listPage({ limit: 50, after: id((i * 50) % (DEVICES - 50)) })),
    telemetryBatch100Us: timeSync(Math.max(20, n / 10), () =>
      telemetry.ingest("dev-00000", batchOf(++batch), cohort, 1),
    ),
    rolloutMemberTxUs: timeSync(n, (i) =>
      rollouts.transaction(() => {
        rollouts.setPhase("r-1", id(i), "probation", TS);
        rollouts.setDesiredSeq("r-1", id(i), i);
      }),
    ),
    selectOneUs: timeSync(n, () => db.prepare("SELECT 1 AS one").get()),
  };
}

/** The same statements through the raw async client (the anchor for the bridge's overhead). */
async function rawPgFigures(url: string, n: number) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const q = (sql: string) => translateStatement(sql).text;
  const get = q("SELECT * FROM devices WHERE id = ?");
  const page = q(
    "SELECT id, tags, profile, presence, reported, last_seen, desired_seq, created_at FROM devices WHERE id > ? ORDER BY id LIMIT ?",
  );
  // The statements the repository sends on PostgreSQL for a batch: one unnest INSERT and the counters.
  const ins = q(
    `INSERT INTO telemetry_records
     (device_id, seq, kind, ts, model, version, cohort, ok, latency_ms, non_finite, source, body, received_at)
     SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[],
       ?::bigint[], ?::double precision[], ?::bigint[], ?::text[], ?::text[], ?::bigint[])
     ON CONFLICT DO NOTHING RETURNING seq`,
  );
  const counters = q(
    `INSERT INTO telemetry_devices (device_id, high_seq, stored, duplicates, batches, device_dropped, last_batch_at)
     VALUES (?, ?, ?, 0, 1, 0, ?) ON CONFLICT(device_id) DO UPDATE SET high_seq = GREATEST(telemetry_devices.high_seq, excluded.high_seq),
       stored = telemetry_devices.stored + excluded.stored, batches = telemetry_devices.batches + 1`,
  );
  const phase = q("UPDATE rollout_devices SET phase = ?, phase_since = ? WHERE rollout_id = ? AND device_id = ?");
  const seq = q("UPDATE rollout_devices SET desired_seq = ? WHERE rollout_id = ? AND device_id = ?");
  let batch = 1_000_000;
  const out = {
    deviceGetUs: await timeAsync(n, (i) => c.query({ name: "g", text: get, values: [id(i * 37)] })),
    devicePage50Us: await timeAsync(n, (i) =>
      c.query({ name: "p", text: page, values: [id((i * 50) % (DEVICES - 50)), 50] }),
    ),
    telemetryBatch100Us: await timeAsync(Math.max(20, n / 10), async () => {
      const b = batchOf(++batch);
      const rows = b.records.map((r) => [
        "dev-00001",
        r.seq,
        r.kind,
        r.ts,
        "vad",
        "1.0.0",
        "stage-0",
        1,
        2,
        0,
        "api",
        JSON.stringify(r),
        1,
      ]);
      await c.query("BEGIN");
      await c.query({ name: "i", text: ins, values: rows[0]!.map((_, k) => rows.map((row) => row[k])) });
      await c.query({ name: "c", text: counters, values: ["dev-00001", b.lastSeq, 100, 1] });
      await c.query("COMMIT");
    }),
    rolloutMemberTxUs: await timeAsync(n, async (i) => {
      await c.query("BEGIN");
      await c.query({ name: "ph", text: phase, values: ["probation", TS, "r-1", id(i)] });
      await c.query({ name: "sq", text: seq, values: [i, "r-1", id(i)] });
      await c.query("COMMIT");
    }),
    selectOneUs: await timeAsync(n, () => c.query({ name: "one", text: "SELECT 1 AS one" })),
  };
  await c.end();
  return out;
}

export async function benchStoreEngines(n = 500): Promise<Record<string, unknown>> {
  const load = loadavg().map((x) => Math.round(x * 100) / 100);
  const tmp = await makeTempDir("ef-bench-store-");
  const t = await createTestDatabase();
  try {
    const lite = openDatabase(join(tmp.path, "sqlite"));
    seed(lite);
    const sqlite = repoFigures(lite, n);
    lite.close();
    const bridge = openStore({ dataDir: "unused", databaseUrl: t.url });
    seed(bridge);
    const pgBridge = repoFigures(bridge, n);
    bridge.close();
    const rawPg = await rawPgFigures(t.url, n);
    return {
      scenario: "store-engines",
      n,
      devices: DEVICES,
      loadavg: load,
      unit: "µs median per call",
      sqlite,
      pgBridge,
      // The anchor: same statements, same database, the async `pg` client awaited one by one.
      rawPg,
      bridgeOverRaw: Object.fromEntries(
        Object.entries(pgBridge).map(([k, v]) => [k, Math.round((v / rawPg[k as keyof typeof rawPg]) * 100) / 100]),
      ),
    };
  } finally {
    await t.drop();
    await tmp.cleanup();
  }
}
