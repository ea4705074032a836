import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { canonicalJson } from "../../shared/canonical-json.js";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { type DesiredState, DesiredStateSchema, type HealthPolicy } from "../../shared/schemas/desired-state.js";
import type { DeviceEvent, InstalledRef, ReportedState, UpdateState } from "../../shared/schemas/device-state.js";
import { type Manifest, ManifestSchema } from "../../shared/schemas/manifest.js";
import { SamplesFileSchema } from "../../shared/schemas/tensor.js";
import type { Envelope, Root } from "../../shared/schemas/trust.js";
import { extractBundle } from "../bundle/safe-extract.js";
import type { InstalledModel, LoadedVersion, ModelRuntime } from "../runtime/model-runtime.js";
import type { AgentStore, ModelRecord } from "../store/agent-store.js";
import type { ChunkChannel } from "../transport/chunk-channel.js";
import { type DeviceFacts, verifyDesiredState } from "../trust/verify-desired.js";
import { startDownload } from "./downloader.js";
import { planUpdate } from "./plan-update.js";
import { buildReported } from "./reported.js";
import { judgeProbation, marksBundleBad, PIPELINE, type PipelineStep, planResume } from "./verdicts.js";

export interface UpdaterDeps {
  log: Logger;
  clock: Clock;
  store: AgentStore;
  runtime: ModelRuntime;
  channel: ChunkChannel;
  publish: { event(e: DeviceEvent): void; reported(r: ReportedState): void };
  root: () => Root;
  dirs: { downloads: string; models: string; staging: string };
  identity: { deviceId: string; agentVersion: string; profile: string; arch: string };
  facts: DeviceFacts;
  download?: { chunkSize?: number; window?: number; timeoutMs?: number; maxTries?: number };
}

export interface Updater {
  /** Serves committed models from disk and resumes interrupted updates; needs no network. */
  start(): Promise<void>;
  /** An inbound `desired` payload (already JSON-parsed); verified, persisted, reconciled. */
  onDesired(payload: unknown): void;
  /** Runtime signal: a host exited unasked (crash, OOM kill). */
  hostExited(installed: InstalledModel): void;
  reported(): ReportedState;
  publishReported(): void;
  /** Resolves when no update work is queued (tests, shutdown). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

interface Job {
  model: string;
  ref: InstalledRef;
  /** Size of the whole bundle file, from the signed assignment. */
  size: number;
  manifest: Manifest;
  rawManifest: Envelope<unknown>;
  policy: HealthPolicy;
  rolloutId: string | null;
  loaded: LoadedVersion | null;
}

const IDLE = (model: string): ModelRecord => ({
  model,
  state: "idle",
  committed: null,
  candidate: null,
  error: null,
  rolloutId: null,
  probationRestarts: 0,
});

/**
 * Executor of the update state machine (DESIGN §5). Decisions are pure (`verifyDesiredState`,
 * `planUpdate`, `planResume`, `judgeProbation`); this file does the I/O in between.
 * Invariants: update work runs strictly one job at a time on the `queue` chain; every transition
 * is written to SQLite before its event and the `reported` document are published.
 */
export function createUpdater(deps: UpdaterDeps): Updater {
  const { log, clock, store, runtime } = deps;
  const progress = new Map<string, { bytes: number; total: number }>();
  const crashes = new Map<string, number>(); // by bundle sha256, for the probation verdict
  const probationWaiters = new Set<() => void>();
  let queue: Promise<void> = Promise.resolve();
  let closed = false;
  let abortDownload: (() => Promise<void>) | null = null;

  const enqueue = (name: string, work: () => Promise<void>) => {
    queue = queue.then(async () => {
      if (closed) return;
      try {
        await work();
      } catch (err) {
        log.error({ err, work: name }, "update work failed");
      }
    });
  };

  const reported = () =>
    buildReported({
      ...deps.identity,
      now: clock.now(),
      lastDesiredSeq: store.lastDesired()?.seq ?? 0,
      models: store.models(),
      progress,
    });
  const publishReported = () => deps.publish.reported(reported());

  const transition = (model: string, to: UpdateState, patch: Partial<ModelRecord> = {}, error?: ErrorJson) => {
    const prev = store.model(model) ?? IDLE(model);
    const next: ModelRecord = { ...prev, ...patch, state: to, error: error ?? (to === "failed" ? prev.error : null) };
    const eventSeq = store.saveModel(next);
    log.info({ model, from: prev.state, to, error }, "update transition");
    const event: DeviceEvent = {
      type: "update.transition",
      deviceId: deps.identity.deviceId,
      ts: new Date(clock.now()).toISOString(),
      eventSeq,
      model,
      bundle: next.candidate?.sha256 ?? null,
      rolloutId: next.rolloutId,
      from: prev.state,
      to,
    };
    if (error) event.error = error;
    deps.publish.event(event);
    publishReported();
  };

  const installedOf = async (model: string, ref: InstalledRef): Promise<InstalledModel> => {
    const dir = join(deps.dirs.models, model, ref.sha256);
    const env = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as Envelope<unknown>;
    return { model, ...ref, dir, manifest: ManifestSchema.parse(env.signed) };
  };

  /** The accepted desired state and, per model, its assignment's raw manifest. */
  const accepted = (): { desired: DesiredState; rawManifests: Map<string, Envelope<unknown>> } | null => {
    const last = store.lastDesired();
    if (!last) return null;
    const raw = last.document as Envelope<{ assignments: { model: string; manifest: Envelope<unknown> }[] }>;
    const desired = DesiredStateSchema.parse(raw.signed);
    return { desired, rawManifests: new Map(raw.signed.assignments.map((a) => [a.model, a.manifest])) };
  };

  const jobFor = (model: string, sha256: string): Job | null => {
    const acc = accepted();
    const a = acc?.desired.assignments.find((x) => x.model === model && x.bundle.sha256 === sha256);
    const rawManifest = acc?.rawManifests.get(model);
    if (!acc || !a || !rawManifest) return null;
    const manifest = ManifestSchema.parse(rawManifest.signed);
    const ref: InstalledRef = {
      version: manifest.model.version,
      variant: manifest.model.variant,
      sha256,
      releaseCounter: a.releaseCounter,
    };
    const rolloutId = acc.desired.rollout?.id ?? null;
    return {
      model,
      ref,
      size: a.bundle.size,
      manifest,
      rawManifest,
      policy: acc.desired.healthPolicy,
      rolloutId,
      loaded: null,
    };
  };

  const steps: Record<PipelineStep, (job: Job) => Promise<void>> = {
    downloading: async (job) => {
      const dl = startDownload({
        sha256: job.ref.sha256,
        size: job.size,
        dir: deps.dirs.downloads,
        store,
        channel: deps.channel,
        clock,
        log,
        ...deps.download,
        onProgress: (bytes, total) => {
          progress.set(job.model, { bytes, total });
          publishReported();
        },
      });
      abortDownload = dl.close;
      try {
        await dl.done;
      } finally {
        abortDownload = null;
        progress.delete(job.model);
      }
    },
    staging: async (job) => {
      const dest = join(deps.dirs.models, job.model, job.ref.sha256);
      if (await exists(dest)) return; // renamed into place only after every check passed
      await extractBundle({
        bundlePath: join(deps.dirs.downloads, `${job.ref.sha256}.bundle`),
        rawManifest: job.rawManifest,
        manifest: job.manifest,
        stagingParent: deps.dirs.staging,
        destDir: dest,
      });
    },
    loading: async (job) => {
      job.loaded = await runtime.load(await installedOf(job.model, job.ref));
    },
    "smoke-testing": async (job) => {
      if (!job.loaded) job.loaded = await runtime.load(await installedOf(job.model, job.ref));
      const dir = join(deps.dirs.models, job.model, job.ref.sha256);
      const samples = SamplesFileSchema.parse(JSON.parse(await readFile(join(dir, "samples.json"), "utf8")));
      const result = await runtime.smokeTest(job.loaded, samples);
      if (!result.ok) {
        throw new EdgeFleetError("SMOKE_TEST_FAILED", `smoke test failed for ${job.model}@${job.ref.version}`, {
          samples: result.samples.filter((s) => !s.ok),
        });
      }
    },
    swapping: async (job) => {
      if (!job.loaded) throw new EdgeFleetError("INTERNAL", "swap without a loaded candidate");
      await runtime.activate(job.loaded);
    },
    probation: async (job) => {
      crashes.set(job.ref.sha256, 0);
      await waitProbation(job.policy.probationSeconds * 1000);
      if (closed) throw new EdgeFleetError("INTERNAL", "agent closing during probation");
      const verdict = judgeProbation({
        candidateSha: job.ref.sha256,
        servingSha: runtime.serving().get(job.model)?.installed.sha256 ?? null,
        hostCrashes: crashes.get(job.ref.sha256) ?? 0,
        maxHostRestarts: 0,
      });
      if (!verdict.ok) throw new EdgeFleetError(verdict.code, verdict.reason);
    },
  };

  const waitProbation = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        timer.cancel();
        probationWaiters.delete(done);
        resolve();
      };
      const timer = clock.setTimeout(done, ms);
      probationWaiters.add(done); // a crash or close() ends the window early
    });

  /** Runs the pipeline from `from`; failures before the swap leave the committed version serving. */
  const runPipeline = async (job: Job, from: PipelineStep) => {
    let swapped = false;
    try {
      for (const step of PIPELINE.slice(PIPELINE.indexOf(from))) {
        transition(job.model, step);
        await steps[step](job);
        if (step === "swapping") swapped = true;
      }
    } catch (err) {
      const e = toEdgeFleetError(err);
      if (closed) return; // shutdown interrupts; the persisted state resumes on the next start
      if (swapped) return revert(job.model, e.toJSON());
      if (job.loaded) await runtime.unload(job.loaded).catch(() => undefined);
      if (marksBundleBad(e.code)) store.markBad(job.ref.sha256, job.model, e.code);
      transition(job.model, "failed", {}, e.toJSON());
      return;
    }
    store.raiseCounter(job.model, job.ref.releaseCounter);
    transition(job.model, "committed", { committed: job.ref, candidate: null, probationRestarts: 0 });
  };

  /** Back to the last committed version (DESIGN §5); the candidate is marked bad, never retried. */
  const revert = async (model: string, error: ErrorJson) => {
    const rec = store.model(model) ?? IDLE(model);
    transition(model, "reverting", {}, error);
    if (rec.candidate) store.markBad(rec.candidate.sha256, model, error.code);
    try {
      if (rec.committed) {
        const loaded = await runtime.load(await installedOf(model, rec.committed));
        await runtime.activate(loaded);
      } else {
        const serving = runtime.serving().get(model);
        if (serving) await runtime.unload(serving);
      }
    } catch (err) {
      log.error({ err, model }, "revert could not restore the committed version");
    }
    transition(model, "reverted", { probationRestarts: 0 }, error);
  };

  const install = async (job: Job) => {
    const rec = store.model(job.model) ?? IDLE(job.model);
    if (rec.committed?.sha256 === job.ref.sha256) {
      transition(job.model, "committed", { candidate: null, rolloutId: job.rolloutId });
      return;
    }
    transition(job.model, "verifying", { candidate: job.ref, rolloutId: job.rolloutId, probationRestarts: 0 });
    await runPipeline(job, "downloading");
  };

  const reconcile = async () => {
    const acc = accepted();
    if (!acc) return;
    for (const action of planUpdate(store.models(), acc.desired)) {
      if (closed) return;
      if (action.kind !== "install") continue;
      const job = jobFor(action.model, action.assignment.bundle.sha256);
      if (job) await install(job);
    }
  };

  return {
    async start() {
      for (const rec of store.models()) {
        if (!rec.committed) continue;
        try {
          await runtime.activate(await runtime.load(await installedOf(rec.model, rec.committed)));
        } catch (err) {
          log.error({ err, model: rec.model }, "could not load the committed model");
        }
      }
      for (const rec of store.models()) {
        const restarts = rec.state === "probation" ? rec.probationRestarts + 1 : rec.probationRestarts;
        const job = rec.candidate ? jobFor(rec.model, rec.candidate.sha256) : null;
        const policy = job?.policy.maxHostRestarts ?? 0;
        const action = planResume(rec.state, restarts, policy);
        if (action.kind === "none") continue;
        if (rec.state === "probation") store.saveModel({ ...rec, probationRestarts: restarts });
        if (action.kind === "revert" || !job) {
          const err =
            action.kind === "revert" ? action : { code: "INTERNAL" as const, reason: "assignment no longer known" };
          enqueue(`revert ${rec.model}`, () => revert(rec.model, { code: err.code, message: err.reason }));
        } else enqueue(`resume ${rec.model}`, () => runPipeline(job, action.from));
      }
      enqueue("reconcile", reconcile);
      publishReported();
    },
    onDesired(payload) {
      const last = store.lastDesired();
      if (last && canonicalJson(last.document) === canonicalJson(payload)) return; // retained re-delivery
      const result = verifyDesiredState(payload, {
        root: deps.root(),
        deviceId: deps.identity.deviceId,
        lastSeq: last?.seq ?? 0,
        now: clock.now(),
        highestCounters: store.highestCounters(),
        badBundles: store.badBundles(),
        facts: deps.facts,
      });
      if (!result.ok) {
        log.warn({ error: result.error, seq: result.seq }, "desired state rejected");
        deps.publish.event({
          type: "desired.rejected",
          deviceId: deps.identity.deviceId,
          ts: new Date(clock.now()).toISOString(),
          eventSeq: store.nextEventSeq(),
          seq: result.seq,
          error: result.error,
        });
        return;
      }
      store.acceptDesired(result.value.desired.seq, result.value.raw);
      publishReported();
      enqueue("reconcile", reconcile);
    },
    hostExited(installed) {
      crashes.set(installed.sha256, (crashes.get(installed.sha256) ?? 0) + 1);
      for (const wake of [...probationWaiters]) wake();
    },
    reported,
    publishReported,
    idle: () => queue,
    async close() {
      closed = true;
      for (const wake of [...probationWaiters]) wake();
      await abortDownload?.();
      await queue;
    },
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
