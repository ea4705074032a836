import { join } from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGovernanceService } from "../../../fleet-server/registry/governance-service.js";
import { createGovernanceRepo } from "../../../fleet-server/store/governance-repo.js";
import { MIGRATIONS } from "../../../fleet-server/store/migrations.js";
import { createFakeClock } from "../../../shared/clock.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

/**
 * Migration 11 on a real SQLite file that already holds a fleet (issue 21): versions registered
 * before it read as candidates with an unknown pusher, and the review and stage history tables
 * refuse to be rewritten.
 */
describe("governance store (migration 11)", () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let db: Database.Database;

  beforeEach(async () => {
    tmp = await makeTempDir("ef-gov-store-");
    db = new Database(join(tmp.path, "fleet.db"));
    db.pragma("foreign_keys = ON");
    // The store as it stood before governance, with a version in it.
    for (const m of MIGRATIONS.filter((x) => x.version < 11)) db.exec(m.sql);
    db.prepare(
      "INSERT INTO model_versions (name, version, lineage, samples_count, model_sha256, created_at) VALUES ('vad', '0.9.0', '{}', 1, ?, ?)",
    ).run("a".repeat(64), new Date(0).toISOString());
    db.exec(MIGRATIONS.find((x) => x.version === 11)!.sql);
  });
  afterEach(async () => {
    db.close();
    await tmp.cleanup();
  });

  const service = () =>
    createGovernanceService({
      log: pino({ level: "silent" }),
      clock: createFakeClock(Date.parse("2026-01-01T00:00:00Z")),
      repo: createGovernanceRepo(db),
      hasVersion: (name, version) =>
        db.prepare("SELECT 1 FROM model_versions WHERE name = ? AND version = ?").get(name, version) !== undefined,
      listDevices: () => [],
    });

  it("a version from before the migration is a candidate with an unknown pusher, and can be approved", () => {
    const gov = service();
    expect(gov.view("vad", "0.9.0")).toMatchObject({ stage: "candidate", pushedBy: null, approved: true });
    gov.setPolicy("vad", { requiredApprovals: 1, maxUnapprovedPercent: 5 }, "bootstrap-admin");
    expect(gov.view("vad", "0.9.0")).toMatchObject({ stage: "candidate", approved: false });
    const v = gov.review("vad", "0.9.0", "token:x", "approve", "ok");
    expect(v).toMatchObject({ stage: "approved", approvedBy: ["token:x"] });
    expect(() => gov.view("vad", "9.9.9")).toThrow(/not found/);
  });

  it("reviews and stage history are append-only", () => {
    const gov = service();
    gov.review("vad", "0.9.0", "token:x", "refuse", "no");
    gov.setStage("vad", "0.9.0", "deprecated", "token:y", "old");
    for (const table of ["version_reviews", "version_stage_events"]) {
      expect(() => db.exec(`UPDATE ${table} SET actor = 'someone-else'`)).toThrow(/append-only/);
      expect(() => db.exec(`DELETE FROM ${table}`)).toThrow(/append-only/);
    }
    expect(gov.view("vad", "0.9.0").reviews).toHaveLength(1);
    expect(gov.view("vad", "0.9.0").history).toHaveLength(1);
  });
});
