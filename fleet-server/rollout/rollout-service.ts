import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { DeviceIdSchema, ModelNameSchema, SemverSchema, VariantSchema } from "../../shared/schemas/common.js";
import { type Assignment, HealthPolicySchema, SignedDesiredStateSchema } from "../../shared/schemas/desired-state.js";
import { ReportedStateSchema } from "../../shared/schemas/device-state.js";
import type { Topics } from "../../shared/topics.js";
import type { KeyPair } from "../../shared/trust/keys.js";
import type { Transport } from "../broker/transport.js";
import type { ModelService } from "../registry/model-service.js";
import type { DeviceRepo, DeviceRow } from "../store/device-repo.js";
import type { RolloutRepo, RolloutRow } from "../store/rollout-repo.js";
import { buildDesiredState, mergeAssignments, signDesiredState } from "./desired-state.js";
import { countStates, deviceRolloutStatus, rolloutStatus } from "./status.js";

export const CreateRolloutRequestSchema = z.object({
  model: ModelNameSchema,
  version: SemverSchema,
  variant: VariantSchema.default("fp32"),
  target: z
    .object({
      deviceIds: z.array(DeviceIdSchema).max(10_000).optional(),
      tags: z.record(z.string(), z.string()).optional(),
    })
    .refine((t) => (t.deviceIds?.length ?? 0) > 0 || Object.keys(t.tags ?? {}).length > 0, {
      message: "target needs deviceIds or tags",
    }),
  healthPolicy: HealthPolicySchema.partial().optional(),
});
export type CreateRolloutRequest = z.infer<typeof CreateRolloutRequestSchema>;

export interface RolloutDeps {
  log: Logger;
  clock: Clock;
  topics: Topics;
  transport: Transport;
  devices: DeviceRepo;
  rollouts: RolloutRepo;
  models: ModelService;
  director: KeyPair;
}

const EVENTS_FOR_STATUS = 200;

/** Devices matching the selector: listed ids, and/or devices carrying every given tag (AND). */
export function selectDevices(all: readonly DeviceRow[], target: CreateRolloutRequest["target"]): DeviceRow[] {
  const ids = target.deviceIds ? new Set(target.deviceIds) : null;
  const tags = Object.entries(target.tags ?? {});
  return all.filter((d) => (ids === null || ids.has(d.id)) && tags.every(([k, v]) => d.tags[k] === v));
}

function previousAssignments(desired: unknown): Assignment[] {
  const parsed = SignedDesiredStateSchema.safeParse(desired);
  return parsed.success ? parsed.data.signed.assignments : [];
}

export function createRolloutService(deps: RolloutDeps) {
  const { log, clock, topics, transport, devices, rollouts, models, director } = deps;

  function view(r: RolloutRow) {
    const rows = rollouts.devices(r.id);
    const perDevice = rows.map((rd) => {
      const dev = devices.get(rd.deviceId);
      const reported = ReportedStateSchema.safeParse(dev?.reported);
      const events = devices.recentEvents(rd.deviceId, EVENTS_FOR_STATUS).map((e) => e.body);
      const st = deviceRolloutStatus({
        model: r.model,
        bundle: r.bundleSha256,
        desiredSeq: rd.desiredSeq,
        reported: reported.success ? reported.data : null,
        events,
      });
      return { deviceId: rd.deviceId, ...st, updatedAt: dev?.lastSeen ?? rd.assignedAt };
    });
    const counts = countStates(perDevice.map((d) => d.state));
    return {
      id: r.id,
      model: r.model,
      version: r.version,
      variant: r.variant,
      bundle: r.bundleSha256,
      target: r.target,
      healthPolicy: r.healthPolicy,
      status: rolloutStatus(counts),
      createdAt: r.createdAt,
      devices: perDevice,
      counts,
    };
  }

  return {
    async create(req: CreateRolloutRequest) {
      const bundle = models.bundleFor(req.model, req.version, req.variant);
      const all = devices.list();
      if (req.target.deviceIds) {
        const known = new Set(all.map((d) => d.id));
        const unknown = req.target.deviceIds.filter((id) => !known.has(id));
        if (unknown.length > 0) {
          throw new EdgeFleetError("NOT_FOUND", `unknown device(s): ${unknown.join(", ")}`, { unknown });
        }
      }
      const targeted = selectDevices(all, req.target);
      if (targeted.length === 0) throw new EdgeFleetError("VALIDATION_FAILED", "target matches no devices");

      const healthPolicy = HealthPolicySchema.parse(req.healthPolicy ?? {});
      const id = `r-${randomBytes(8).toString("hex")}`;
      const now = clock.now();
      const createdAt = new Date(now).toISOString();
      rollouts.insert({
        id,
        model: req.model,
        version: req.version,
        variant: req.variant,
        bundleSha256: bundle.sha256,
        target: req.target,
        healthPolicy,
        createdAt,
      });
      for (const target of targeted) {
        // Re-read: another rollout may have changed this device's desired state while we awaited
        // a publish. From here to setDesired nothing awaits, so read-merge-write is atomic.
        const device = devices.get(target.id) ?? target;
        const seq = devices.nextSeq(device.id);
        const assignments = mergeAssignments(previousAssignments(device.desired), {
          model: req.model,
          bundle: { sha256: bundle.sha256, size: bundle.size },
          releaseCounter: bundle.releaseCounter,
          manifest: bundle.manifest,
        });
        const doc = buildDesiredState({
          deviceId: device.id,
          seq,
          now,
          assignments,
          healthPolicy,
          rollout: { id, stage: 0 },
        });
        const signed = signDesiredState(doc, director);
        // Persist before publishing: the chunk server authorizes pulls from the stored document,
        // and a crash between the two only means the retained message is re-sent later.
        devices.setDesired(device.id, signed);
        rollouts.addDevice(id, { deviceId: device.id, desiredSeq: seq, assignedAt: createdAt });
        await transport.publish(topics.device(device.id, "desired"), JSON.stringify(signed), { qos: 1, retain: true });
      }
      log.info({ rolloutId: id, model: req.model, version: req.version, devices: targeted.length }, "rollout created");
      const row = rollouts.get(id);
      if (!row) throw new EdgeFleetError("INTERNAL", `rollout ${id} vanished`);
      return view(row);
    },
    get(id: string) {
      const r = rollouts.get(id);
      if (!r) throw new EdgeFleetError("NOT_FOUND", `rollout ${id} not found`);
      return view(r);
    },
    list() {
      return {
        rollouts: rollouts.list().map((r) => {
          const v = view(r);
          return {
            id: v.id,
            model: v.model,
            version: v.version,
            variant: v.variant,
            status: v.status,
            createdAt: v.createdAt,
            counts: v.counts,
          };
        }),
      };
    },
    /** Re-publishes every device's last desired state (retained), e.g. to a fresh external broker. */
    async republishDesired(): Promise<void> {
      for (const d of devices.list()) {
        if (d.desired === null) continue;
        await transport.publish(topics.device(d.id, "desired"), JSON.stringify(d.desired), { qos: 1, retain: true });
      }
    },
  };
}
export type RolloutService = ReturnType<typeof createRolloutService>;
