import type { LifecycleStage, StageCause } from "../../shared/http/governance.js";
import type { Db } from "./db.js";

/**
 * Store migration 11 (issue 21): model version governance. Kept in tables of its own rather than
 * columns of `model_versions`, so versions registered before it need no backfill: a version
 * without a `version_lifecycle` row is a `candidate` whose pusher is unknown.
 *
 * - `version_lifecycle`: the current stage and who pushed the version (the pusher never counts as
 *   an approver).
 * - `approval_policies`: per model; no row means no approvals required.
 * - `version_reviews` and `version_stage_events`: append-only (triggers refuse UPDATE and DELETE,
 *   like `audit_log`): the record of who approved, refused or moved what, with their comments.
 */
export const GOVERNANCE_MIGRATION_SQL = `
CREATE TABLE version_lifecycle (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  stage TEXT NOT NULL CHECK (stage IN ('candidate', 'approved', 'production', 'deprecated', 'retired')),
  pushed_by TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE INDEX version_lifecycle_by_stage ON version_lifecycle(stage);
CREATE TABLE approval_policies (
  name TEXT PRIMARY KEY,
  required_approvals INTEGER NOT NULL,
  max_unapproved_percent REAL NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL
);
CREATE TABLE version_reviews (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  actor TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('approve', 'refuse')),
  comment TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX version_reviews_by_version ON version_reviews(name, version, seq);
CREATE TABLE version_stage_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  from_stage TEXT NOT NULL,
  to_stage TEXT NOT NULL,
  cause TEXT NOT NULL,
  actor TEXT NOT NULL,
  comment TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX version_stage_events_by_version ON version_stage_events(name, version, seq);
CREATE TRIGGER version_reviews_no_update BEFORE UPDATE ON version_reviews
BEGIN SELECT RAISE(ABORT, 'version_reviews is append-only'); END;
CREATE TRIGGER version_reviews_no_delete BEFORE DELETE ON version_reviews
BEGIN SELECT RAISE(ABORT, 'version_reviews is append-only'); END;
CREATE TRIGGER version_stage_events_no_update BEFORE UPDATE ON version_stage_events
BEGIN SELECT RAISE(ABORT, 'version_stage_events is append-only'); END;
CREATE TRIGGER version_stage_events_no_delete BEFORE DELETE ON version_stage_events
BEGIN SELECT RAISE(ABORT, 'version_stage_events is append-only'); END;
`;

export interface LifecycleRow {
  stage: LifecycleStage;
  pushedBy: string | null;
}
export interface PolicyRow {
  requiredApprovals: number;
  maxUnapprovedPercent: number;
  updatedAt: string;
  updatedBy: string;
}
export interface ReviewRow {
  actor: string;
  decision: "approve" | "refuse";
  comment: string;
  at: string;
}
export interface StageEventRow {
  from: LifecycleStage;
  to: LifecycleStage;
  cause: StageCause;
  actor: string;
  comment: string;
  at: string;
}

/** SQLite access for the governance tables (migration 11). No decisions here, only rows. */
export function createGovernanceRepo(db: Db) {
  const lifecycleStmt = db.prepare("SELECT stage, pushed_by FROM version_lifecycle WHERE name = ? AND version = ?");
  const upsertStage = db.prepare(
    `INSERT INTO version_lifecycle (name, version, stage, pushed_by, updated_at) VALUES (?, ?, ?, NULL, ?)
     ON CONFLICT (name, version) DO UPDATE SET stage = excluded.stage, updated_at = excluded.updated_at`,
  );
  return {
    transaction<T>(fn: () => T): T {
      return db.transaction(fn)();
    },
    lifecycle(name: string, version: string): LifecycleRow | null {
      const r = lifecycleStmt.get(name, version) as { stage: LifecycleStage; pushed_by: string | null } | undefined;
      return r ? { stage: r.stage, pushedBy: r.pushed_by } : null;
    },
    /** Every version with a stage row in `stages` (the stale-devices lookup). */
    versionsIn(stages: readonly LifecycleStage[]): { name: string; version: string; stage: LifecycleStage }[] {
      const marks = stages.map(() => "?").join(", ");
      return db
        .prepare(`SELECT name, version, stage FROM version_lifecycle WHERE stage IN (${marks})`)
        .all(...stages) as { name: string; version: string; stage: LifecycleStage }[];
    },
    /** A freshly registered version: candidate, pushed by `actor`. */
    recordPush(name: string, version: string, actor: string, at: string): void {
      db.prepare(
        `INSERT INTO version_lifecycle (name, version, stage, pushed_by, updated_at) VALUES (?, ?, 'candidate', ?, ?)
         ON CONFLICT (name, version) DO NOTHING`,
      ).run(name, version, actor, at);
    },
    setStage(name: string, version: string, e: StageEventRow): void {
      upsertStage.run(name, version, e.to, e.at);
      db.prepare(
        "INSERT INTO version_stage_events (name, version, from_stage, to_stage, cause, actor, comment, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(name, version, e.from, e.to, e.cause, e.actor, e.comment, e.at);
    },
    history(name: string, version: string): StageEventRow[] {
      return (
        db
          .prepare(
            "SELECT from_stage, to_stage, cause, actor, comment, at FROM version_stage_events WHERE name = ? AND version = ? ORDER BY seq",
          )
          .all(name, version) as {
          from_stage: LifecycleStage;
          to_stage: LifecycleStage;
          cause: StageCause;
          actor: string;
          comment: string;
          at: string;
        }[]
      ).map((r) => ({
        from: r.from_stage,
        to: r.to_stage,
        cause: r.cause,
        actor: r.actor,
        comment: r.comment,
        at: r.at,
      }));
    },
    addReview(name: string, version: string, r: ReviewRow): void {
      db.prepare(
        "INSERT INTO version_reviews (name, version, actor, decision, comment, at) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(name, version, r.actor, r.decision, r.comment, r.at);
    },
    reviews(name: string, version: string): ReviewRow[] {
      return db
        .prepare("SELECT actor, decision, comment, at FROM version_reviews WHERE name = ? AND version = ? ORDER BY seq")
        .all(name, version) as ReviewRow[];
    },
    policy(name: string): PolicyRow | null {
      const r = db
        .prepare(
          "SELECT required_approvals, max_unapproved_percent, updated_at, updated_by FROM approval_policies WHERE name = ?",
        )
        .get(name) as
        | { required_approvals: number; max_unapproved_percent: number; updated_at: string; updated_by: string }
        | undefined;
      return r
        ? {
            requiredApprovals: r.required_approvals,
            maxUnapprovedPercent: r.max_unapproved_percent,
            updatedAt: r.updated_at,
            updatedBy: r.updated_by,
          }
        : null;
    },
    setPolicy(name: string, p: PolicyRow): void {
      db.prepare(
        `INSERT INTO approval_policies (name, required_approvals, max_unapproved_percent, updated_at, updated_by)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET required_approvals = excluded.required_approvals,
           max_unapproved_percent = excluded.max_unapproved_percent, updated_at = excluded.updated_at,
           updated_by = excluded.updated_by`,
      ).run(name, p.requiredApprovals, p.maxUnapprovedPercent, p.updatedAt, p.updatedBy);
    },
  };
}
export type GovernanceRepo = ReturnType<typeof createGovernanceRepo>;
