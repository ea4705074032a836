import { randomBytes } from "node:crypto";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";
import { planRepublish } from "../cluster/republish-plan.js";
import type { GovernanceService } from "../registry/governance-service.js";
import { isVariantPublished } from "../registry/model-service.js";
import type { DeviceRepo } from "../store/device-repo.js";
import type { ModelRepo } from "../store/model-repo.js";
import type { RolloutRepo, RolloutRow } from "../store/rollout-repo.js";
import { AUTO_VARIANT, type CreateRolloutRequest, matchesSelector, normalizeDefinition } from "./definition.js";
import { engineOf, type RolloutExecutor } from "./executor.js";
import { type EngineState, IN_FLIGHT_STATUSES, type RolloutStatus, stageTarget } from "./planner.js";
import type { RolloutScheduler } from "./scheduler.js";
import { rolloutView } from "./view.js";

export type { CreateRolloutRequest } from "./definition.js";
export { CreateRolloutRequestSchema } from "./definition.js";

export interface RolloutDeps {
  log: Logger;
  clock: Clock;
  topics: Topics;
  transport: Transport;
  devices: DeviceRepo;
  rollouts: RolloutRepo;
  models: ModelRepo;
  executor: RolloutExecutor;
  scheduler: RolloutScheduler;
  /** Offline release signing: true while a variant waits for release signatures (never rolled out). */
  isPendingSignature?: (model: string, version: string, variant: string) => boolean;
  /** Revoked devices get no retained desired state back (revocation cleared it; issue 20 §4 review). */
  isRevoked?: (deviceId: string) => boolean;
  /** Lifecycle and approvals (issue 21): retired versions and the canary share of unapproved ones. */
  governance?: Pick<GovernanceService, "checkRollout" | "rolloutCompleted">;
}

export type RolloutCommand = "pause" | "resume" | "abort" | "rollback" | "promote";

/** Which statuses each operator command accepts (anything else is a 409 with the reason). */
const COMMAND_FROM: Record<RolloutCommand, readonly RolloutStatus[]> = {
  pause: ["running"],
  resume: ["paused"],
  abort: ["running", "paused", "completed"],
  rollback: ["running", "paused", "completed", "aborted"],
  promote: ["running", "paused", "completed"],
};

const invalid = (message: string, path: string) =>
  new EdgeFleetError("VALIDATION_FAILED", message, { details: { issues: [{ path: path.split("."), message }] } });

/**
 * Rollout commands and queries. Every state change runs on the scheduler's chain, so it never
 * interleaves with a planning step; the planner then takes it from there.
 */
export function createRolloutService(deps: RolloutDeps) {
  const { log, clock, topics, transport, devices, rollouts, models, executor, scheduler } = deps;
  const view = rolloutView({ rollouts, devices, executor });
  const iso = (t: number) => new Date(t).toISOString();

  /** Checks against the registry and the fleet; nothing is stored or published before they pass. */
  function validateAgainstWorld(req: CreateRolloutRequest, id: string) {
    if (!models.hasVersion(req.model, req.version)) {
      throw invalid(`model ${req.model} version ${req.version} is not in the registry`, "version");
    }
    // Governance first (issue 21): a retired or unapproved version is refused whatever else is wrong.
    const def = normalizeDefinition(req);
    deps.governance?.checkRollout({ model: def.model, version: def.version, definition: def, stage: 0 }, "rollout");
    // `auto` chooses per device at assignment (variant-assignment.ts); the rollout's own bundle is
    // then fp32, the variant every version has and the fallback of the choice.
    const variant = req.variant === AUTO_VARIANT ? "fp32" : req.variant;
    const bundle = models.bundlesOf(req.model, req.version).find((b) => b.variant === variant);
    if (!bundle && deps.isPendingSignature?.(req.model, req.version, variant)) {
      throw new EdgeFleetError(
        "RELEASE_NOT_SIGNED",
        `${req.model} ${req.version} ${variant} is not signed yet: sign its manifest offline (fleetctl release sign) and upload the signatures before rolling it out`,
        { details: { issues: [{ path: ["variant"], message: "release not signed" }] } },
      );
    }
    if (!bundle) throw invalid(`model ${req.model} ${req.version} has no ${variant} bundle`, "variant");
    // An int8 variant that failed its accuracy policy is kept for inspection, never shipped (issue 5).
    if (!isVariantPublished(bundle)) {
      throw invalid(`${req.model} ${req.version} ${req.variant} failed validation and is not published`, "variant");
    }
    const all = devices.listSummaries();
    const known = new Set(all.map((d) => d.id));
    const unknown = (req.target.deviceIds ?? []).filter((d) => !known.has(d));
    if (unknown.length > 0) throw invalid(`unknown device(s): ${unknown.join(", ")}`, "target.deviceIds");
    const matched = all.filter((d) => matchesSelector(d, def.target));
    if (matched.length === 0) throw invalid("target matches no devices", "target");
    def.stages.forEach((s, i) => {
      const covered = stageTarget(matched.length, s.percent);
      if (s.gates.minDevices > covered) {
        throw invalid(
          `stages[${i}].gates.minDevices ${s.gates.minDevices} can never be met: stage ${i + 1} (${s.percent}%) covers ${covered} of the ${matched.length} matched device(s)`,
          `stages.${i}.gates.minDevices`,
        );
      }
    });
    if (def.abort.maxFailedPercent !== undefined && def.abort.minExecuted > matched.length) {
      throw invalid(
        `abort.minExecuted ${def.abort.minExecuted} exceeds the ${matched.length} matched device(s)`,
        "abort.minExecuted",
      );
    }

    // One active rollout per model per device: an in-flight one must be superseded by name.
    const supersedes = new Set(req.supersedes ?? []);
    for (const sid of supersedes) {
      const other = rollouts.get(sid);
      if (!other || other.model !== req.model || !["running", "paused", "completed"].includes(other.status)) {
        throw invalid(`supersedes: ${sid} is not a running, paused or completed rollout of ${req.model}`, "supersedes");
      }
    }
    const matchedIds = new Set(matched.map((d) => d.id));
    const replaced: RolloutRow[] = [];
    for (const other of rollouts.listByStatus(["running", "paused", "completed"])) {
      if (other.model !== req.model || other.id === id) continue;
      // Members read once per rollout (issue 14): per device, a 10,000-member rollout made this
      // 10^8 rows and a superseding create took minutes.
      const members = new Set(rollouts.devices(other.id).map((m) => m.deviceId));
      const overlap = all.filter(
        (d) => matchedIds.has(d.id) && (members.has(d.id) || matchesSelector(d, other.definition.target)),
      );
      if (overlap.length === 0) continue;
      const inFlight = IN_FLIGHT_STATUSES.includes(other.status);
      if (inFlight && !supersedes.has(other.id)) {
        throw new EdgeFleetError(
          "CONFLICT",
          `rollout ${other.id} (${other.status}) already rolls out ${req.model} to ${overlap
            .slice(0, 5)
            .map((d) => d.id)
            .join(", ")}${overlap.length > 5 ? ", …" : ""}; name it in "supersedes" to replace it`,
          { details: { conflicting: other.id } },
        );
      }
      replaced.push(other); // completed ones are superseded implicitly: they have nothing in flight
    }
    return { def, bundle, replaced };
  }

  function command(id: string, cmd: RolloutCommand) {
    return scheduler.serialize(async () => {
      const row = rollouts.get(id);
      if (!row) throw new EdgeFleetError("NOT_FOUND", `rollout ${id} not found`);
      const engine = engineOf(row);
      if (!COMMAND_FROM[cmd].includes(engine.status)) {
        throw new EdgeFleetError("CONFLICT", `cannot ${cmd} rollout ${id}: it is ${engine.status}`, {
          details: {
            status: engine.status,
          },
        });
      }
      // Both carry the rollout on from where it stands: past the canary share only once approved.
      if (cmd === "resume" || cmd === "promote") {
        deps.governance?.checkRollout(
          {
            model: row.model,
            version: row.version,
            definition: engine.definition,
            stage: engine.status === "completed" ? engine.definition.stages.length - 1 : engine.state.stage,
          },
          cmd,
        );
      }
      const now = clock.now();
      const s: EngineState = { ...engine.state };
      switch (cmd) {
        case "pause":
          executor.setState(
            row,
            "paused",
            { ...s, reason: "paused by operator" },
            { type: "paused", detail: { by: "operator" } },
          );
          break;
        case "resume": {
          // Resuming means "go on despite the failures so far": they stop counting against gates.
          // The accuracy gate's decision goes too: the operator asks for a new look (issue 22).
          const acknowledged = rollouts.acknowledgeFailures(id);
          const next = { ...s, reason: null, accuracy: null };
          executor.setState(row, "running", next, { type: "resumed", detail: { acknowledged } });
          break;
        }
        case "abort":
          // Shadow/ab: also takes the side version off the devices (planAbort in planner.ts).
          await executor.abort(row, "aborted by operator");
          break;
        case "rollback":
          executor.setState(
            row,
            "rolling-back",
            { ...s, reason: "rollback by operator" },
            { type: "rollback-started", detail: { by: "operator" } },
          );
          await executor.rollback(row);
          break;
        case "promote": {
          const acknowledged = rollouts.acknowledgeFailures(id);
          const last = engine.definition.stages.length - 1;
          const modeChanged = s.servingMode !== "active";
          const next: EngineState = {
            ...s,
            stage: last,
            stageStartedAt: now,
            soakStartedAt: null,
            reason: null,
            servingMode: "active",
          };
          executor.setState(row, engine.status === "completed" ? "completed" : "running", next, {
            type: "promoted",
            detail: { from: { stage: s.stage, servingMode: s.servingMode }, acknowledged },
          });
          if (modeChanged) await executor.republishMembers(row);
          // A completed shadow/ab rollout promoted: the version is now active on its whole target.
          if (row.status === "completed") {
            deps.governance?.rolloutCompleted({
              model: row.model,
              version: row.version,
              definition: engine.definition,
              stage: last,
              servingMode: "active",
              rolloutId: id,
            });
          }
          break;
        }
      }
      log.info({ rollout: id, cmd }, "rollout command");
      await executor.step(row);
      return view(rollouts.get(id)!);
    });
  }

  return {
    create(req: CreateRolloutRequest) {
      return scheduler.serialize(async () => {
        const id = `r-${randomBytes(8).toString("hex")}`;
        const { def, bundle, replaced } = validateAgainstWorld(req, id);
        const now = clock.now();
        const state: EngineState = {
          stage: 0,
          stageStartedAt: now,
          soakStartedAt: null,
          servingMode: def.strategy === "shadow" ? "shadow" : def.strategy === "ab" ? "ab" : "active",
          accuracy: null,
          reason: null,
        };
        rollouts.transaction(() => {
          rollouts.insert({
            id,
            model: def.model,
            version: def.version,
            variant: def.variant,
            bundleSha256: bundle.sha256,
            target: def.target,
            healthPolicy: def.healthPolicy,
            createdAt: iso(now),
            definition: def,
            status: "running",
            state,
          });
          rollouts.addEvent(id, iso(now), {
            type: "created",
            detail: { strategy: def.strategy, stages: def.stages.length },
          });
          for (const old of replaced) {
            rollouts.setState(old.id, "superseded", { ...old.state, reason: `superseded by ${id}` });
            rollouts.addEvent(old.id, iso(now), { type: "superseded", detail: { by: id } });
          }
        });
        log.info({ rollout: id, model: def.model, version: def.version, strategy: def.strategy }, "rollout created");
        // The first stage is assigned before answering, so the caller sees who got it.
        const row = rollouts.get(id)!;
        await executor.step(row);
        return view(rollouts.get(id)!);
      });
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
            strategy: v.strategy,
            stage: v.stage,
            createdAt: v.createdAt,
            counts: v.counts,
          };
        }),
      };
    },
    pause: (id: string) => command(id, "pause"),
    resume: (id: string) => command(id, "resume"),
    abort: (id: string) => command(id, "abort"),
    rollback: (id: string) => command(id, "rollback"),
    promote: (id: string) => command(id, "promote"),
    /**
     * Re-publishes devices' last desired states (retained), e.g. to a fresh broker after a restart.
     * With `retained` (the seqs the broker holds, issue 14) only the documents it lacks are sent.
     * Returns how many were published.
     */
    async republishDesired(retained?: ReadonlyMap<string, number | null>): Promise<number> {
      const stored: { deviceId: string; seq: number; doc: SignedDesiredState }[] = [];
      for (const d of devices.list()) {
        if (d.desired === null || deps.isRevoked?.(d.id)) continue;
        stored.push({ deviceId: d.id, seq: d.desired.signed.seq, doc: d.desired });
      }
      const wanted = retained ? new Set(planRepublish(stored, retained)) : null;
      let published = 0;
      for (const d of stored) {
        if (wanted && !wanted.has(d.deviceId)) continue;
        await transport.publish(topics.device(d.deviceId, "desired"), JSON.stringify(d.doc), { qos: 1, retain: true });
        published += 1;
      }
      return published;
    },
  };
}
export type RolloutService = ReturnType<typeof createRolloutService>;
