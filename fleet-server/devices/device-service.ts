import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { ImportResult } from "../../shared/http/devices.js";
import type { Logger } from "../../shared/logger.js";
import {
  DeviceEventSchema,
  PresenceSchema,
  type ReportedState,
  ReportedStateSchema,
} from "../../shared/schemas/device-state.js";
import { presenceOf } from "../health/health-decision.js";
import type { PresenceTracker } from "../health/presence-tracker.js";
import type { DeviceListQuery, DeviceListRow, DeviceRepo } from "../store/device-repo.js";
import type { VariantMeasurementRow } from "../store/variant-measurement-repo.js";
import { planImport } from "./bulk-enroll.js";
import { createCredentialCache } from "./credential-cache.js";
import { generatePassword, hashPassword, verifyPassword } from "./password.js";

export interface DeviceDeps {
  log: Logger;
  clock: Clock;
  devices: DeviceRepo;
  /** Revoked devices never authenticate again, over MQTT or HTTP (issue 7). */
  isRevoked?: (deviceId: string) => boolean;
  /** Sees the plaintext password once, to store the Mosquitto-format hash (broker-config). */
  onEnrolled?: (deviceId: string, password: string) => void;
  /**
   * Lets the new device in on the broker before its credentials exist anywhere else (issue 20 §5:
   * Mosquitto dynamic security); throws when the broker cannot, and then nothing is enrolled.
   */
  admitToBroker?: (deviceId: string, password: string) => Promise<void>;
  /** What the device measured per model and variant (issue 5), shown in `GET /v1/devices/{id}`. */
  variantMeasurements?: (deviceId: string) => VariantMeasurementRow[];
  /** Presence judged against the server's broker link: `unknown` while it cannot see (issue 20 §4). */
  presence?: PresenceTracker;
}

const RECENT_EVENTS = 50;
/** Broker admissions (Mosquitto dynsec round trips) in flight during a bulk enrollment. */
const ADMIT_CONCURRENCY = 16;

/** One line per model for fleet listings: what runs and what is happening, from the last reported state. */
function modelSummaries(reported: ReportedState | null) {
  if (!reported) return [];
  return reported.models.map((m) => ({
    model: m.model,
    state: m.state,
    committedVersion: m.committed?.version ?? null,
    candidateVersion: m.candidate?.version ?? null,
  }));
}

export function deviceSummary(d: DeviceListRow, presence?: PresenceTracker) {
  return {
    id: d.id,
    tags: d.tags,
    profile: d.profile,
    ...(presence?.view(d) ?? presenceOf(d.presence, undefined, 0, { connected: true, outages: [] })),
    lastSeen: d.lastSeen,
    createdAt: d.createdAt,
    desiredSeq: d.desiredSeq,
    models: modelSummaries(d.reported),
  };
}

/** Parses a presence payload: plain `online`/`offline`, or the same as a JSON string. */
function parsePresence(payload: Buffer): "online" | "offline" | null {
  let text = payload.toString("utf8").trim();
  if (text.startsWith('"')) {
    try {
      text = JSON.parse(text) as string;
    } catch {
      return null;
    }
  }
  const r = PresenceSchema.safeParse(text);
  return r.success ? r.data : null;
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString("utf8"));
  } catch {
    return undefined;
  }
}

export function createDeviceService(deps: DeviceDeps) {
  const { log, clock, devices } = deps;
  const verified = createCredentialCache({ now: clock.now });
  const nowIso = () => new Date(clock.now()).toISOString();
  /** Ids whose enrollment is under way (one process serves the API; invariant: added and removed around the awaits). */
  const enrolling = new Set<string>();

  return {
    /**
     * Creates a device with a fresh password. `opts.commit` wraps the synchronous store step (insert
     * and broker hash), so a caller can run it inside its own transaction: the enrollment-token
     * exchange spends the token in the same transaction (issue 20 §5).
     */
    async enroll(
      input: { id: string; tags?: Record<string, string>; profile?: string },
      opts: { commit?: (store: () => void) => void } = {},
    ) {
      if (devices.get(input.id) || enrolling.has(input.id)) {
        throw new EdgeFleetError("CONFLICT", `device ${input.id} already exists`);
      }
      enrolling.add(input.id);
      const password = generatePassword();
      try {
        const passwordHash = hashPassword(password);
        // The broker first (issue 20 §5): if it cannot admit the device, nothing is stored and a
        // token stays unspent. `enrolling` keeps a concurrent enrollment of the same id from
        // replacing the winner's broker credentials between the check above and the insert.
        await deps.admitToBroker?.(input.id, password);
        const store = () => {
          const ok = devices.insert({
            id: input.id,
            passwordHash,
            tags: input.tags ?? {},
            profile: input.profile ?? null,
            now: nowIso(),
          });
          if (!ok) throw new EdgeFleetError("CONFLICT", `device ${input.id} already exists`);
          deps.onEnrolled?.(input.id, password);
        };
        if (opts.commit) opts.commit(store);
        else store();
      } finally {
        enrolling.delete(input.id);
      }
      log.info({ deviceId: input.id }, "device enrolled");
      return { id: input.id, password };
    },

    /**
     * Bulk enrollment (issue 14, `POST /v1/devices/import`): every entry is checked on its own and
     * refused alone (`planImport`); the accepted ones are admitted to the broker (a device the broker
     * refuses is not stored: same rule as `enroll`), then stored in one transaction with their broker
     * hashes. A refused entry leaves nothing behind, and the stored ones are complete.
     */
    async enrollMany(
      entries: readonly unknown[],
    ): Promise<{ enrolled: number; failed: number; results: ImportResult[] }> {
      const plan = planImport(entries, (id) => devices.exists(id) || enrolling.has(id));
      const results: ImportResult[] = [];
      const accepted: {
        index: number;
        device: { id: string; tags?: Record<string, string>; profile?: string };
        password: string;
      }[] = [];
      for (const p of plan) {
        if (p.ok) accepted.push({ index: p.index, device: p.device, password: generatePassword() });
        else results.push({ index: p.index, ok: false, id: p.id, error: { code: p.code, message: p.message } });
      }
      for (const a of accepted) enrolling.add(a.device.id);
      try {
        const admitted: typeof accepted = [];
        let next = 0;
        const worker = async () => {
          while (next < accepted.length) {
            const a = accepted[next++]!;
            try {
              await deps.admitToBroker?.(a.device.id, a.password);
              admitted.push(a);
            } catch (err) {
              const e = err instanceof EdgeFleetError ? err : new EdgeFleetError("INTERNAL", String(err));
              results.push({ index: a.index, ok: false, id: a.device.id, error: { code: e.code, message: e.message } });
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(ADMIT_CONCURRENCY, accepted.length) }, worker));
        const now = nowIso();
        devices.transaction(() => {
          for (const a of admitted) {
            const ok = devices.insert({
              id: a.device.id,
              passwordHash: hashPassword(a.password),
              tags: a.device.tags ?? {},
              profile: a.device.profile ?? null,
              now,
            });
            // Cannot happen (`enrolling` holds the ids), but a lost race must not hand out a password.
            if (!ok) throw new EdgeFleetError("CONFLICT", `device ${a.device.id} already exists`);
            deps.onEnrolled?.(a.device.id, a.password);
          }
        });
        for (const a of admitted) results.push({ index: a.index, ok: true, id: a.device.id, password: a.password });
        log.info({ enrolled: admitted.length, refused: entries.length - admitted.length }, "devices imported");
        results.sort((x, y) => x.index - y.index);
        return { enrolled: admitted.length, failed: entries.length - admitted.length, results };
      } finally {
        for (const a of accepted) enrolling.delete(a.device.id);
      }
    },

    list() {
      return devices.listSummaries().map((d) => deviceSummary(d, deps.presence));
    },

    /** One filtered page (`GET /v1/devices?limit=…`); `next` is null on the last page. */
    page(q: DeviceListQuery & { limit: number }) {
      // One more row than asked says whether another page follows without a COUNT over the fleet.
      const rows = devices.listPage({ ...q, limit: q.limit + 1 });
      const more = rows.length > q.limit;
      const shown = more ? rows.slice(0, q.limit) : rows;
      return { devices: shown.map((d) => deviceSummary(d, deps.presence)), next: more ? shown.at(-1)!.id : null };
    },

    get(id: string) {
      const d = devices.get(id);
      if (!d) throw new EdgeFleetError("NOT_FOUND", `device ${id} not found`);
      return {
        ...deviceSummary(d, deps.presence),
        // Parsed as the contract's type (stored reports were validated on the way in; an unreadable one shows as null).
        reported: d.reported,
        events: devices.recentEvents(id, RECENT_EVENTS).map((e) => e.body),
        variantMeasurements: deps.variantMeasurements?.(id) ?? [],
      };
    },

    /** Checks device credentials; unknown device and wrong password look the same to the caller. */
    async authenticate(id: string, password: string): Promise<boolean> {
      const d = devices.get(id);
      if (!d || deps.isRevoked?.(id)) {
        verified.forget(id);
        return false;
      }
      if (verified.hit(id, password, d.passwordHash)) return true;
      const ok = await verifyPassword(password, d.passwordHash);
      if (ok) verified.remember(id, password, d.passwordHash);
      return ok;
    },

    /** Inbound MQTT from a device topic. Bad payloads are logged and dropped: a device must never crash us. */
    onPresence(deviceId: string, payload: Buffer): void {
      const presence = parsePresence(payload);
      if (!presence) return void log.warn({ deviceId }, "presence payload invalid; dropped");
      if (!devices.exists(deviceId)) return void log.warn({ deviceId }, "presence from unknown device; dropped");
      devices.setPresence(deviceId, presence, nowIso());
      deps.presence?.heard(deviceId);
    },

    onReported(deviceId: string, payload: Buffer): void {
      const parsed = ReportedStateSchema.safeParse(parseJson(payload));
      if (!parsed.success) {
        return void log.warn(
          { deviceId, issues: parsed.error.issues.slice(0, 5) },
          "reported payload invalid; dropped",
        );
      }
      if (parsed.data.deviceId !== deviceId) {
        return void log.warn({ deviceId, claimed: parsed.data.deviceId }, "reported deviceId mismatch; dropped");
      }
      if (!devices.exists(deviceId)) return void log.warn({ deviceId }, "reported from unknown device; dropped");
      devices.setReported(deviceId, parsed.data, nowIso());
    },

    onEvent(deviceId: string, payload: Buffer): void {
      const parsed = DeviceEventSchema.safeParse(parseJson(payload));
      if (!parsed.success) {
        return void log.warn({ deviceId, issues: parsed.error.issues.slice(0, 5) }, "event payload invalid; dropped");
      }
      if (parsed.data.deviceId !== deviceId) {
        return void log.warn({ deviceId, claimed: parsed.data.deviceId }, "event deviceId mismatch; dropped");
      }
      if (!devices.exists(deviceId)) return void log.warn({ deviceId }, "event from unknown device; dropped");
      devices.insertEvent(deviceId, parsed.data, nowIso());
    },
  };
}
export type DeviceService = ReturnType<typeof createDeviceService>;
