import type { Db } from "../store/db.js";
import type { ApiRole } from "./roles.js";

/** SQLite access for the security tables (migration 4). No decisions here, only rows. */

export interface ApiTokenRow {
  id: string;
  name: string;
  role: ApiRole;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  role: string | null;
  method: string;
  /** The route pattern the router matched (`/v1/tokens/:id`), null when none did (issue 20 §1). */
  route: string | null;
  /** The path as the client sent it, percent-encoding and all (no query). */
  path: string;
  status: number;
  errorCode: string | null;
  remote: string | null;
}

export interface EnrollmentTokenRow {
  id: string;
  deviceId: string | null;
  tags: Record<string, string>;
  profile: string | null;
  expiresAt: string;
  usedAt: string | null;
}

interface TokenDbRow {
  id: string;
  name: string;
  role: ApiRole;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
}

const toToken = (r: TokenDbRow): ApiTokenRow => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: r.created_at,
  createdBy: r.created_by,
  revokedAt: r.revoked_at,
});

export function createSecurityRepo(db: Db) {
  return {
    insertToken(t: { id: string; name: string; role: ApiRole; sha256: string; now: string; createdBy: string }) {
      db.prepare(
        "INSERT INTO api_tokens (id, name, role, token_sha256, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(t.id, t.name, t.role, t.sha256, t.now, t.createdBy);
    },
    tokenBySha256(sha256: string): ApiTokenRow | null {
      const r = db.prepare("SELECT * FROM api_tokens WHERE token_sha256 = ?").get(sha256) as TokenDbRow | undefined;
      return r ? toToken(r) : null;
    },
    listTokens(): ApiTokenRow[] {
      return (db.prepare("SELECT * FROM api_tokens ORDER BY created_at, id").all() as TokenDbRow[]).map(toToken);
    },
    revokeToken(id: string, now: string): boolean {
      return (
        db.prepare("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run(now, id).changes ===
        1
      );
    },

    appendAudit(e: Omit<AuditEntry, "seq">): void {
      db.prepare(
        "INSERT INTO audit_log (at, actor, role, method, route, path, status, error_code, remote) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(e.at, e.actor, e.role, e.method, e.route, e.path, e.status, e.errorCode, e.remote);
    },
    listAudit(afterSeq: number, limit: number): AuditEntry[] {
      const rows = db
        .prepare("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
        .all(afterSeq, limit) as Record<string, unknown>[];
      return rows.map((r) => ({
        seq: r.seq as number,
        at: r.at as string,
        actor: r.actor as string,
        role: (r.role as string | null) ?? null,
        method: r.method as string,
        route: (r.route as string | null) ?? null,
        path: r.path as string,
        status: r.status as number,
        errorCode: (r.error_code as string | null) ?? null,
        remote: (r.remote as string | null) ?? null,
      }));
    },

    insertEnrollmentToken(t: {
      id: string;
      sha256: string;
      deviceId: string | null;
      tags: Record<string, string>;
      profile: string | null;
      expiresAt: string;
      now: string;
    }) {
      db.prepare(
        "INSERT INTO enrollment_tokens (id, token_sha256, device_id, tags, profile, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ).run(t.id, t.sha256, t.deviceId, JSON.stringify(t.tags), t.profile, t.expiresAt, t.now);
    },
    /** An unused, unexpired enrollment token by hash, or null. Reads only. */
    usableEnrollmentToken(sha256: string, now: string): EnrollmentTokenRow | null {
      const r = db
        .prepare("SELECT * FROM enrollment_tokens WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ?")
        .get(sha256, now) as Record<string, unknown> | undefined;
      if (!r) return null;
      return {
        id: r.id as string,
        deviceId: (r.device_id as string | null) ?? null,
        tags: JSON.parse(r.tags as string) as Record<string, string>,
        profile: (r.profile as string | null) ?? null,
        expiresAt: r.expires_at as string,
        usedAt: null,
      };
    },
    /**
     * Marks the token used; false when it already was. The UPDATE's WHERE is the one-time check, so
     * of two concurrent exchanges of one token exactly one succeeds.
     */
    spendEnrollmentToken(id: string, deviceId: string, now: string): boolean {
      return (
        db
          .prepare("UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL")
          .run(now, deviceId, id).changes === 1
      );
    },
    /** Runs `fn` in one SQLite transaction (nested calls become savepoints); a throw rolls it back. */
    transaction<T>(fn: () => T): T {
      return db.transaction(fn)();
    },

    revokeDevice(deviceId: string, now: string, reason: string | null): boolean {
      return (
        db
          .prepare("INSERT OR IGNORE INTO device_revocations (device_id, revoked_at, reason) VALUES (?, ?, ?)")
          .run(deviceId, now, reason).changes === 1
      );
    },
    isRevoked(deviceId: string): boolean {
      return db.prepare("SELECT 1 FROM device_revocations WHERE device_id = ?").get(deviceId) !== undefined;
    },

    putBrokerCredential(deviceId: string, mosquittoHash: string): void {
      db.prepare(
        "INSERT INTO broker_credentials (device_id, mosquitto_hash) VALUES (?, ?) ON CONFLICT(device_id) DO UPDATE SET mosquitto_hash = excluded.mosquitto_hash",
      ).run(deviceId, mosquittoHash);
    },
    /** Hashes of devices that are not revoked, by id. */
    activeBrokerCredentials(): { deviceId: string; mosquittoHash: string }[] {
      return (
        db
          .prepare(
            "SELECT device_id, mosquitto_hash FROM broker_credentials WHERE device_id NOT IN (SELECT device_id FROM device_revocations) ORDER BY device_id",
          )
          .all() as { device_id: string; mosquitto_hash: string }[]
      ).map((r) => ({ deviceId: r.device_id, mosquittoHash: r.mosquitto_hash }));
    },
  };
}
export type SecurityRepo = ReturnType<typeof createSecurityRepo>;
