import path from "node:path";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type RawTensor, rawToJson } from "../../shared/tensors.js";
import { bounded, countNonFinite } from "./host-health.js";
import { allowedCpus, applyPlacement, backgroundPlacement, backgroundSessionOptions } from "./host-placement.js";
import type { SequenceStep } from "./host-sequences.js";
import { createHostSupervisor } from "./host-supervisor.js";
import { createIdleUnload } from "./idle-unload.js";
import { type ModelHostDeps, type SpawnOptions, spawnModelHost } from "./model-host.js";
import type { InferRecord, InferRequest, InferResult, InstalledModel, LoadedVersion } from "./model-runtime.js";
import { routeVersion } from "./route-version.js";
import { attributeRunFailure, createShapeMemory, shapeSignature } from "./run-failures.js";
import { sequenceMethods } from "./runtime-sequences.js";
import type { AgentModelRuntime, ModelRuntimeDeps, RawInferRequest, RawInferResult, Version } from "./runtime-types.js";
import { appInputSpecs } from "./sequence-plan.js";
import { sessionOptionsFromProfile } from "./session-options.js";
import { runSmokeTest } from "./smoke-test.js";
import { checkSessionInputs, validateInputs, validateOutputNames, validateRawInputs } from "./tensor-validation.js";
import { warmUp } from "./warm-up.js";

export type {
  AgentModelRuntime,
  ModelRuntimeDeps,
  RawInferRequest,
  RawInferResult,
  VersionState,
} from "./runtime-types.js";

const noop = () => undefined;

/** The manifest's hash of model.onnx, so the host loads only the bytes that were signed. */
const modelHash = (i: InstalledModel): { modelSha256?: string } => {
  const f = i.manifest.files.find((x) => x.path === "model.onnx");
  return f ? { modelSha256: f.sha256 } : {};
};
const label = (i: InstalledModel): string => `${i.model}@${i.version}`;

/**
 * The agent's model runtime (architecture.md §5): one host process per loaded version, atomic hot swap.
 *
 * Concurrency invariants (single-threaded event loop, so "atomic" = "no await in between"):
 * - `infer` picks its target version and increments that version's `inFlight` in the same synchronous
 *   section; `activate` replaces the serving pointer synchronously. So every request is counted on exactly
 *   the version it was routed to, and a retiring version's count only goes down.
 * - A retiring version is never picked again, so once its count reaches 0 it stays 0 and its host can be
 *   stopped without failing a request.
 * - A crashed host is restarted with backoff unless its version is retiring; requests routed to a crashed
 *   version wait (bounded) for the new host instead of failing. `retire` waits for a restart in progress,
 *   so no host outlives its version.
 */
export function createModelRuntime(deps: ModelRuntimeDeps): AgentModelRuntime {
  const log = deps.log.child({ component: "runtime" });
  const hostDeps: ModelHostDeps = { ...deps.host, log: deps.log, clock: deps.clock };
  const sessionOptions = sessionOptionsFromProfile(deps.profile);
  const drainTimeoutMs = deps.drainTimeoutMs ?? 30_000;
  const sequenceDrainMs = deps.sequenceDrainMs ?? 60_000;
  /** Every version whose host is not stopped, in load order. */
  const versions = new Set<Version>();
  const servingByModel = new Map<string, Version>();
  const listeners = new Set<(r: InferRecord) => void>();
  const restartWaitMs = deps.restartWaitMs ?? 15_000;
  /** Input shapes each model has run successfully: tells a caller's odd shape from a model's failure. */
  const provenShapes = createShapeMemory();

  const emit = (r: InferRecord) => {
    for (const l of listeners) {
      try {
        l(r);
      } catch (err) {
        log.error({ err }, "inference record listener failed");
      }
    }
  };

  // Crash supervision (restart with backoff) lives in host-supervisor.ts; it reads the serving map.
  const { watch } = createHostSupervisor({
    log,
    clock: deps.clock,
    hostDeps,
    isServing: (v) => servingByModel.get(v.installed.model) === v,
    onHostExit: (v, exit) => deps.onHostExit?.(v.installed, exit),
    applyPlacement: async (v) => {
      await place(v);
    },
  });

  // Low-power profiles (idleUnloadSeconds): idle serving hosts stop and reload on demand.
  const idle = createIdleUnload({
    log,
    clock: deps.clock,
    idleMs: deps.profile.idleUnloadSeconds === undefined ? null : deps.profile.idleUnloadSeconds * 1000,
    stopHost: (v) => v.host.stop(),
    async startHost(v) {
      const host = await spawnModelHost(hostDeps, v.spawn);
      if (v.retiring) {
        await host.stop();
        throw new EdgeFleetError("MODEL_NOT_READY", `${label(v.installed)} is being unloaded`);
      }
      v.host = host;
      watch(v, host);
      await place(v);
    },
  });

  function own(loaded: LoadedVersion): Version {
    const v = loaded as Version;
    if (!versions.has(v)) {
      throw new EdgeFleetError("NOT_FOUND", `${label(loaded.installed)} is not loaded in this runtime`);
    }
    return v;
  }

  /** Applies `v.placement` to `v`'s current host; false when the OS refused part of it (logged). */
  async function place(v: Version): Promise<boolean> {
    if (!v.placement) return true;
    const failures = await applyPlacement(v.host.pid, v.placement);
    if (failures.length > 0) {
      log.warn({ version: label(v.installed), placement: v.placement, failures }, "could not place model host");
    }
    return failures.length === 0;
  }

  /** Synchronous on purpose: see the invariants above. */
  const pick = (model: string, version?: string): Version => routeVersion(versions, servingByModel, model, version);

  /** Validates, converts and runs on `v`, keeping `inFlight` exact. Sync until the first await. */
  const runOn = async (v: Version, inputs: Record<string, JsonTensor>, outputs?: string[], probe = false) =>
    (await runTimedOn(v, inputs, outputs, probe)).outputs;

  /** `runOn` that also gives the model's execution time in its host (probation calibration). */
  async function runTimedOn(
    v: Version,
    inputs: Record<string, JsonTensor>,
    outputs?: string[],
    probe = false,
  ): Promise<{ outputs: Record<string, JsonTensor>; computeMs: number }> {
    validateInputs(v.installed.manifest.inputs, inputs);
    const feeds: Record<string, RawTensor> = {};
    for (const [name, t] of Object.entries(inputs)) feeds[name] = jsonToRaw(name, t);
    const raw = await runRawOn(v, feeds, outputs, probe);
    const out: Record<string, JsonTensor> = {};
    for (const [name, t] of Object.entries(raw.outputs)) out[name] = rawToJson(t);
    return { outputs: out, computeMs: raw.computeMs };
  }

  /**
   * Typed-array path (binary tensor extension, dynamic batching, batch jobs): no JSON arrays are
   * built, so a 1×3×640×640 tensor crosses from the socket to the host without a per-element copy
   * into JS numbers. Sync until the first await, like `runOn`.
   */
  async function runRawOn(
    v: Version,
    feeds: Record<string, RawTensor>,
    outputs?: string[],
    probe = false,
    seq?: SequenceStep,
  ): Promise<{ outputs: Record<string, RawTensor>; computeMs: number }> {
    const manifest = v.installed.manifest;
    // A sequence's frame carries the app's inputs only; its state and constants are the host's (issue 18).
    validateRawInputs(seq ? appInputSpecs(manifest) : manifest.inputs, feeds);
    const wanted = validateOutputNames(manifest.outputs, outputs);
    v.inFlight++;
    const started = performance.now();
    try {
      const waking = idle.awake(v); // null on the hot path: no extra await when the host runs
      if (waking) await waking;
      // A host that just died (IPC closed, exit not yet seen) is about to be restarted: wait for that too.
      if (!v.restarting && !v.retiring && !v.host.alive()) await bounded(deps.clock, v.host.exited.then(noop), 2_000);
      if (v.restarting) await bounded(deps.clock, v.restarting, restartWaitMs);
      const res = await v.host.run(feeds, wanted, seq);
      provenShapes.remember(v.installed.model, shapeSignature(feeds));
      const nonFinite = countNonFinite(res.outputs);
      const out = res.outputs;
      const totalMs = performance.now() - started;
      emit({
        installed: v.installed,
        at: deps.clock.now(),
        computeMs: res.computeMs,
        cpuMs: res.cpuMs,
        totalMs,
        ok: true,
        nonFinite,
        probe,
        stages: res.timing,
      });
      return { outputs: out, computeMs: res.computeMs };
    } catch (err) {
      // Blame and words (issue 20 §3/§7): a shape onnxruntime cannot take is the caller's 400; its
      // internal paths never reach a client.
      const proven = provenShapes.has(v.installed.model, shapeSignature(feeds));
      const e = attributeRunFailure(toEdgeFleetError(err, "INFERENCE_FAILED"), feeds, proven);
      const totalMs = performance.now() - started;
      emit({
        installed: v.installed,
        at: deps.clock.now(),
        computeMs: null,
        totalMs,
        ok: false,
        errorCode: e.code,
        nonFinite: 0,
        probe,
      });
      throw e;
    } finally {
      v.inFlight--;
      idle.touch(v);
      if (v.inFlight === 0 && v.holds === 0) v.onIdle?.();
    }
  }

  /** Waits until no request runs on `v` (or the drain timeout), then stops its host. Idempotent. */
  function retire(v: Version, why: string): Promise<void> {
    v.retiring ??= drainAndStop(v, why);
    return v.retiring;
  }

  async function drainAndStop(v: Version, why: string): Promise<void> {
    if (v.state !== "crashed") v.state = "retiring";
    if (v.inFlight > 0 || v.holds > 0) {
      await new Promise<void>((resolve) => {
        // Live sequences (holds) finish on the version they started on, up to their own deadline (issue 18).
        const deadline = v.holds > 0 ? Math.max(v.sequenceDrainMs ?? sequenceDrainMs, drainTimeoutMs) : drainTimeoutMs;
        const timer = deps.clock.setTimeout(() => {
          log.warn(
            { version: label(v.installed), inFlight: v.inFlight, sequences: v.holds },
            "drain timed out; stopping host anyway",
          );
          resolve();
        }, deadline);
        v.onIdle = () => {
          timer.cancel();
          resolve();
        };
      });
      v.onIdle = null;
    }
    v.cancelBackoff?.();
    if (v.restarting) await v.restarting;
    await idle.forget(v);
    await v.host.stop();
    v.state = "stopped";
    versions.delete(v);
    log.info({ version: label(v.installed), why }, "model host stopped");
  }

  const warm = (v: Version) => warmUp(v, (inputs) => runOn(v, inputs), log);

  const runtime: AgentModelRuntime = {
    profile: deps.profile,

    async load(installed, opts = {}) {
      const spawn: SpawnOptions = {
        modelPath: path.join(installed.dir, "model.onnx"),
        ...modelHash(installed),
        // Kept in `spawn`, so a crash restart of a background host stays non-spinning.
        options: opts.background ? backgroundSessionOptions(sessionOptions) : sessionOptions,
        label: label(installed),
        ...(installed.manifest.sequence ? { sequence: installed.manifest.sequence } : {}),
      };
      const host = await spawnModelHost(hostDeps, spawn);
      const v: Version = {
        installed,
        background: opts.background === true,
        host,
        spawn,
        state: "loaded",
        restarts: 0,
        crashTimes: [],
        restarting: null,
        cancelBackoff: null,
        inFlight: 0,
        holds: 0,
        onIdle: null,
        retiring: null,
        rss: () => (idle.info(v).parked ? Promise.resolve(0) : v.host.rss()),
      };
      versions.add(v);
      watch(v, host);
      try {
        if (opts.background) {
          v.placement = backgroundPlacement(await allowedCpus());
          await place(v);
        }
        checkSessionInputs(installed.manifest, host.metadata);
        await warm(v);
      } catch (err) {
        await retire(v, "load failed");
        const e = toEdgeFleetError(err, "MODEL_LOAD_FAILED");
        throw e.code === "MODEL_LOAD_FAILED"
          ? e
          : new EdgeFleetError("MODEL_LOAD_FAILED", `warm-up of ${label(installed)} failed: ${e.message}`, {
              details: e.toJSON(),
            });
      }
      log.info({ version: label(installed), pid: host.pid }, "model version loaded");
      idle.touch(v);
      return v;
    },

    smokeTest(loaded, samples) {
      const v = own(loaded);
      return runSmokeTest(samples, (inputs) => runOn(v, inputs));
    },

    async activate(loaded, opts = {}) {
      const next = own(loaded);
      if (next.retiring || (!next.host.alive() && !next.restarting && !idle.info(next).parked)) {
        throw new EdgeFleetError("MODEL_NOT_READY", `${label(next.installed)} has no running host (${next.state})`);
      }
      const model = next.installed.model;
      const prev = servingByModel.get(model);
      if (prev === next) return;
      // The swap itself: synchronous, so no request can observe a model without a serving version.
      servingByModel.set(model, next);
      next.state = "serving";
      log.info(
        { model, from: prev?.installed.version ?? null, to: next.installed.version },
        "serving version switched",
      );
      if (!prev) return;
      // Kept on the version: a blue-green standby retired later still honours the rollout's deadline.
      if (opts.sequenceDrainMs !== undefined) prev.sequenceDrainMs = opts.sequenceDrainMs;
      if (opts.keepPrevious && !prev.retiring) {
        // Blue-green: the previous host stays up, unrouted, for an instant revert.
        if (prev.state === "serving") prev.state = "loaded";
        return;
      }
      const retiring = retire(prev, `replaced by ${next.installed.version}`);
      // Live sequences end on `prev` in the background (issue 18): the swap and its probation do not wait.
      if (prev.holds === 0) await retiring;
      else retiring.catch((err) => log.error({ err }, "retire failed"));
    },

    async unload(loaded) {
      const v = loaded as Version;
      if (!versions.has(v)) return;
      if (servingByModel.get(v.installed.model) === v) servingByModel.delete(v.installed.model);
      await retire(v, "unloaded");
    },

    serving() {
      return new Map(servingByModel);
    },

    async infer(req: InferRequest): Promise<InferResult> {
      const v = pick(req.model, req.version);
      const outputs = await runOn(v, req.inputs, req.outputs);
      return { model: v.installed.model, version: v.installed.version, outputs };
    },

    async inferRaw(req: RawInferRequest): Promise<RawInferResult> {
      const v = pick(req.model, req.version);
      const { outputs } = await runRawOn(v, req.inputs, req.outputs, req.internal === true);
      return { model: v.installed.model, version: v.installed.version, sha256: v.installed.sha256, outputs };
    },

    ...sequenceMethods({ own, versions, runRaw: runRawOn }),

    async probe(loaded, inputs) {
      const v = own(loaded);
      const { outputs, computeMs } = await runTimedOn(v, inputs, undefined, true);
      return { model: v.installed.model, version: v.installed.version, outputs, computeMs };
    },

    observe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    restarts(loaded) {
      return (loaded as Version).restarts;
    },

    isLoaded(loaded) {
      const v = loaded as Version;
      return versions.has(v) && !v.retiring;
    },

    async close() {
      servingByModel.clear();
      // Shutting down: live sequences do not hold their hosts up (holdForSequences).
      for (const v of versions) v.holds = 0;
      await Promise.all([...versions].map((v) => retire(v, "runtime closing")));
    },

    loaded() {
      return [...versions];
    },
    stateOf(loaded) {
      return (loaded as Version).state;
    },
    inFlight(loaded) {
      return (loaded as Version).inFlight;
    },
    async setPriority(loaded, nice) {
      const v = own(loaded);
      v.placement = { ...v.placement, nice };
      return place(v);
    },

    hostPid(loaded) {
      return (loaded as Version).host.pid;
    },
    idleState(loaded) {
      return idle.info(loaded as Version);
    },
  };
  return runtime;
}
