import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Topics } from "../../shared/topics.js";
import { mosquittoHash } from "../broker/mosquitto-config.js";
import type { Transport } from "../broker/transport.js";
import type { ApiRole } from "./roles.js";
import type { AuditEntry, EnrollmentTokenRow, SecurityRepo } from "./security-repo.js";

/** Who made an authenticated operator request (architecture.md §6). */
export interface Principal {
  /** `bootstrap-admin` for the `admin-token` file, `token:<id>` otherwise. */
  actor: string;
  role: ApiRole;
}

export interface SecurityDeps {
  log: Logger;
  clock: Clock;
  repo: SecurityRepo;
  topics: Topics;
  /** The `admin-token` file: the bootstrap admin, always full rights (demo, e2e, first token). */
  bootstrapAdminToken: string;
}

/** Retained device topics cleared on revocation, so nothing the device left behind lingers. */
const RETAINED_KINDS = ["desired", "reported", "presence"] as const;
const ENROLLMENT_TTL_MAX_S = 7 * 24 * 3600;

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

/** Prefixes make a leaked string recognisable in logs and secret scanners. */
const newSecret = (prefix: string) => `${prefix}_${randomBytes(32).toString("base64url")}`;

export function createSecurityService(deps: SecurityDeps) {
  const { log, clock, repo, topics } = deps;
  const nowIso = () => new Date(clock.now()).toISOString();
  // Late-bound: the broker and transport start after the device service that needs revocation checks.
  let disconnect: ((deviceId: string) => Promise<void>) | null = null;
  let transport: Transport | null = null;

  /**
   * Checks a one-time enrollment token for `deviceId` without spending it (issue 20 §5: a refused
   * enrollment must not waste the token). Unknown, used and expired tokens all give UNAUTHORIZED
   * (no oracle); a token bound to another device id gives FORBIDDEN.
   */
  const checkEnrollmentToken = (token: string, deviceId: string): EnrollmentTokenRow => {
    const row = repo.usableEnrollmentToken(sha256(token), nowIso());
    if (!row) throw new EdgeFleetError("UNAUTHORIZED", "enrollment token invalid, used or expired");
    if (row.deviceId !== null && row.deviceId !== deviceId) {
      throw new EdgeFleetError("FORBIDDEN", "enrollment token is bound to another device id");
    }
    return row;
  };

  return {
    attachBroker(fn: (deviceId: string) => Promise<void>) {
      disconnect = fn;
    },
    attachTransport(t: Transport) {
      transport = t;
    },

    /** Bearer token → principal; unknown or revoked token: UNAUTHORIZED (never says which). */
    authenticateBearer(token: string): Principal {
      if (sameSecret(token, deps.bootstrapAdminToken)) return { actor: "bootstrap-admin", role: "admin" };
      const row = repo.tokenBySha256(sha256(token));
      if (row && row.revokedAt === null) return { actor: `token:${row.id}`, role: row.role };
      throw new EdgeFleetError("UNAUTHORIZED", "invalid bearer token");
    },
    createToken(input: { name: string; role: ApiRole }, by: Principal) {
      const id = randomBytes(8).toString("hex");
      const token = newSecret("eft");
      repo.insertToken({
        id,
        name: input.name,
        role: input.role,
        sha256: sha256(token),
        now: nowIso(),
        createdBy: by.actor,
      });
      log.info({ id, role: input.role, by: by.actor }, "api token created");
      // The only time the plaintext exists outside the caller: it is not stored.
      return { id, name: input.name, role: input.role, token };
    },
    listTokens: () => repo.listTokens(),
    revokeToken(id: string) {
      if (!repo.revokeToken(id, nowIso())) throw new EdgeFleetError("NOT_FOUND", `no active token ${id}`);
      return { id, revoked: true as const };
    },

    audit(e: Omit<AuditEntry, "seq" | "at">) {
      try {
        repo.appendAudit({ ...e, at: nowIso() });
      } catch (err) {
        log.error({ err }, "audit append failed");
      }
    },
    listAudit: (after: number, limit: number) => repo.listAudit(after, limit),

    createEnrollmentToken(input: {
      deviceId?: string;
      tags?: Record<string, string>;
      profile?: string;
      ttlSeconds: number;
    }) {
      if (input.ttlSeconds > ENROLLMENT_TTL_MAX_S) {
        throw new EdgeFleetError("VALIDATION_FAILED", `ttlSeconds at most ${ENROLLMENT_TTL_MAX_S}`);
      }
      const id = randomBytes(8).toString("hex");
      const token = newSecret("efe");
      const expiresAt = new Date(clock.now() + input.ttlSeconds * 1000).toISOString();
      repo.insertEnrollmentToken({
        id,
        sha256: sha256(token),
        deviceId: input.deviceId ?? null,
        tags: input.tags ?? {},
        profile: input.profile ?? null,
        expiresAt,
        now: nowIso(),
      });
      return { id, token, expiresAt, deviceId: input.deviceId ?? null };
    },
    checkEnrollmentToken,
    /**
     * Check first, then spend, in one SQLite transaction (issue 20 §5): the token is checked again,
     * `create` stores the device (throwing CONFLICT for an existing id), and only then is the token
     * marked used. Anything thrown rolls the whole transaction back, so the token stays usable.
     * `create` must be synchronous: an await would end the transaction.
     */
    redeemEnrollmentToken<T>(token: string, deviceId: string, create: (grant: EnrollmentTokenRow) => T): T {
      return repo.transaction(() => {
        const grant = checkEnrollmentToken(token, deviceId);
        const created = create(grant);
        if (!repo.spendEnrollmentToken(grant.id, deviceId, nowIso())) {
          throw new EdgeFleetError("UNAUTHORIZED", "enrollment token invalid, used or expired");
        }
        return created;
      });
    },

    /** Called by the device service at enrollment, while the plaintext password is in hand. */
    onEnrolled(deviceId: string, password: string) {
      repo.putBrokerCredential(deviceId, mosquittoHash(password));
    },
    isRevoked: (deviceId: string) => repo.isRevoked(deviceId),

    /**
     * Revocation (issue 7): refuse from now on (the broker and HTTP check `isRevoked` on every
     * authentication), drop the live connection, and clear the device's retained messages.
     */
    async revokeDevice(deviceId: string, reason: string | null) {
      const first = repo.revokeDevice(deviceId, nowIso(), reason);
      if (disconnect) await disconnect(deviceId);
      if (transport) {
        for (const kind of RETAINED_KINDS) {
          await transport.publish(topics.device(deviceId, kind), "", { qos: 1, retain: true });
        }
      }
      log.warn({ deviceId, reason }, "device revoked");
      return { id: deviceId, revoked: true as const, alreadyRevoked: !first };
    },
  };
}
export type SecurityService = ReturnType<typeof createSecurityService>;
