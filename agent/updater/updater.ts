import { join } from "node:path";
import { EdgeFleetError, type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import type {
  DeviceEvent,
  InstalledRef,
  ProbationReport,
  ReportedState,
  UpdateState,
} from "../../shared/schemas/device-state.js";
import { reverifyInstalled } from "../bundle/reverify.js";
import type { InstalledModel } from "../runtime/model-runtime.js";
import type { ModelRecord } from "../store/agent-store.js";
import { isStorageCode } from "../store/storage-faults.js";
import { checkCompatibility, estimateHostMB } from "../trust/verify-desired.js";
import { acceptDesired, rejectDesired } from "./accept-desired.js";
import { createJobSource, manifestKey } from "./assignment-jobs.js";
import { checkCapacity, installedEstimates } from "./capacity.js";
import { createDamagedCandidates } from "./damaged-candidate.js";
import { createDiskGc } from "./disk-gc.js";
import { summarize } from "./health-summary.js";
import { createPipelineSteps, type Job } from "./pipeline-steps.js";
import { activeAssignments } from "./plan-side.js";
import { planUpdate } from "./plan-update.js";
import { createHealthRecorder, type MonitorDeps } from "./probation-monitor.js";
import { createProbationReports } from "./probation-reports.js";
import { buildReported } from "./reported.js";
import { createSelfHeal, isRepair } from "./self-heal.js";
import { createSideCandidates } from "./side-candidates.js";
import { createStorageRetry } from "./storage-retry.js";
import type { Updater, UpdaterDeps } from "./updater-types.js";
import { marksBundleBad, PIPELINE, type PipelineStep, planResume } from "./verdicts.js";

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
 * Executor of the update state machine (architecture.md §5). Decisions are pure (`verifyDesiredState`,
 * `planUpdate`, `planResume`, `judgeProbation`); this file does the I/O in between.
 * Invariants: update work runs strictly one job at a time on the `queue` chain; every transition
 * is written to SQLite before its event and the `reported` document are published.
 */
export function createUpdater(deps: UpdaterDeps): Updater {
  const { log, clock, store, runtime } = deps;
  const progress = new Map<string, { bytes: number; total: number }>();
  const deferring = new Map<string, NonNullable<ReportedState["models"][number]["deferring"]>>();
  const recorder = createHealthRecorder(runtime);
  const monitorDeps: MonitorDeps = { log, clock, runtime, recorder, ...deps.monitor };
  const reports = createProbationReports({
    store,
    clock,
    deviceId: deps.identity.deviceId,
    publishEvent: (e) => deps.publish.event(e),
  });
  const budgetBytes = deps.limits.memoryBudgetMB * 2 ** 20;
  const pauseWaiters = new Set<() => void>();
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
      probation: reports.all(),
      deferring,
      sides: sides.reported(),
      ...(deps.storage ? { storage: deps.storage.snapshot() } : {}),
      ...(deps.feedback ? { feedback: deps.feedback() } : {}),
      ...(deps.cost ? { cost: deps.cost() } : {}),
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
    // Before every load (issue 7): a local process may have changed the files since they were verified.
    const acc = accepted();
    const assigned = acc?.desired.assignments.some((a) => a.model === model && a.bundle.sha256 === ref.sha256);
    const trusted = (assigned && acc?.rawManifests.get(manifestKey(model, ref.sha256))) || null;
    const manifest = await reverifyInstalled({ dir, model, ref, trusted, root: deps.root() });
    return { model, ...ref, dir, manifest };
  };

  const { accepted, jobFor } = createJobSource(store);

  const steps = createPipelineSteps({
    deps,
    recorder,
    monitorDeps,
    reports,
    budgetBytes,
    progress,
    deferring,
    publishReported,
    installedOf,
    isClosed: () => closed,
    setAbortDownload: (abort) => {
      abortDownload = abort;
    },
    // Only called from a pipeline step, long after `disk` below exists.
    collectGarbage: () => disk.run(accepted()?.desired.assignments.map((a) => a.bundle.sha256) ?? []),
  });
  const damaged = createDamagedCandidates({ log, dirs: deps.dirs, runtime });
  const sides = createSideCandidates({
    ...{ log, clock, store, runtime, recorder, steps, jobFor, installedOf, publishReported, damaged },
    serving: deps.serving,
    facts: deps.facts,
    deviceId: deps.identity.deviceId,
    publishEvent: (e) => deps.publish.event(e),
    hold: (step) => holdBefore(step),
    isClosed: () => closed,
    onStorageFault: (e) => storageRetry.onFault(e),
  });
  const disk = createDiskGc({ log, dirs: deps.dirs, store, runtime, sides });
  const storageRetry = createStorageRetry({
    ...{ log, clock, storage: deps.storage, backoff: deps.storageBackoff, random: deps.random },
    reconcile: (why) => enqueue(why, reconcile),
    dataDir: deps.dirs.downloads,
  });

  /** Fault injection (`pauseBeforeStep`) before entering `step`. */
  const holdBefore = (step: PipelineStep) =>
    new Promise<void>((resolve) => {
      const ms = deps.pauseBeforeStep?.[step];
      if (!ms) return resolve();
      const done = () => {
        timer.cancel();
        pauseWaiters.delete(done);
        resolve();
      };
      const timer = clock.setTimeout(done, ms);
      pauseWaiters.add(done); // close() ends it early
    });
  // Damaged committed files are re-acquired, never loaded, and the genuine bundle never marked bad.
  const heal = createSelfHeal({
    ...{ log, clock, store, runtime, steps, jobFor, accepted, transition, enqueue, hold: holdBefore },
    dirs: deps.dirs,
    isClosed: () => closed,
  });

  /** Runs the pipeline from `from`; failures before the swap leave the committed version serving. */
  const runPipeline = async (job: Job, from: PipelineStep, repair?: { repairs: number; damage: ErrorJson }) => {
    let swapped = false;
    let step: PipelineStep = from;
    try {
      for (step of PIPELINE.slice(PIPELINE.indexOf(from))) {
        transition(job.model, step, {}, step === from ? repair?.damage : undefined);
        await holdBefore(step);
        if (closed) throw new EdgeFleetError("INTERNAL", "agent closing");
        await steps[step](job);
        if (step === "staging") storageRetry.onWritten();
        if (step === "swapping") swapped = true;
      }
    } catch (err) {
      const e = toEdgeFleetError(err);
      if (closed) return; // shutdown interrupts; the persisted state resumes on the next start
      if (swapped) return revert(job.model, e.toJSON(), job);
      if (job.loaded) await runtime.unload(job.loaded).catch(() => undefined);
      // Files changed on the device after staging are re-made from verified bytes, never blamed on the bundle.
      const next = await damaged.afterFailure(job, step, e, repair?.repairs ?? 0);
      if (next.kind === "retry") return runPipeline(job, next.from, next);
      if (marksBundleBad(next.error.code)) store.markBad(job.ref.sha256, job.model, next.error.code);
      if (job.report) reports.final(job.model, job.ref.sha256, job.rolloutId, job.report);
      const error = storageRetry.failed(next.error); // a storage fault: reported and retried (issue 20 §2)
      transition(job.model, "failed", {}, error.toJSON());
      return;
    }
    // Commit: the candidate is the rollback point now; the warm previous host is no longer needed.
    if (job.previous) await runtime.unload(job.previous).catch(() => undefined);
    store.raiseCounter(job.model, job.ref.releaseCounter);
    if (job.report) reports.final(job.model, job.ref.sha256, job.rolloutId, job.report);
    transition(job.model, "committed", { committed: job.ref, candidate: null, probationRestarts: 0 });
  };

  /**
   * Back to the last committed version (architecture.md §5); the candidate is marked bad, never retried.
   * With a warm previous host (blue-green) the revert is one atomic switch; otherwise the committed
   * version is loaded again first. Either way the candidate keeps serving until the switch, so no
   * request fails because of the revert.
   */
  const revert = async (model: string, error: ErrorJson, job?: Job) => {
    const rec = store.model(model) ?? IDLE(model);
    let reloadError: EdgeFleetError | null = null;
    transition(model, "reverting", {}, error);
    // A storage fault after the swap reverts (the candidate cannot be kept safely) but never condemns it.
    if (rec.candidate && !isStorageCode(error.code)) store.markBad(rec.candidate.sha256, model, error.code);
    try {
      const serving = runtime.serving().get(model);
      if (job?.previous && runtime.isLoaded(job.previous)) {
        await runtime.activate(job.previous);
      } else if (rec.committed && serving?.installed.sha256 !== rec.committed.sha256) {
        await runtime.activate(await runtime.load(await installedOf(model, rec.committed)));
      } else if (!rec.committed && serving) {
        await runtime.unload(serving);
      }
      if (job?.loaded) await runtime.unload(job.loaded);
    } catch (err) {
      log.error({ err, model }, "revert could not restore the committed version");
      reloadError = toEdgeFleetError(err);
    }
    if (rec.candidate) {
      const now = new Date(clock.now()).toISOString();
      const report: ProbationReport = job?.report ?? {
        verdict: "failed",
        startedAt: now,
        candidate: summarize(rec.candidate, [], {
          hostRestarts: job?.loaded ? runtime.restarts(job.loaded) + job.priorRestarts : rec.probationRestarts,
          rssBytes: null,
        }),
        baseline: job?.baseline ?? null,
      };
      reports.final(model, rec.candidate.sha256, rec.rolloutId, {
        ...report,
        verdict: "failed",
        reason: error.code,
        message: error.message,
        endedAt: report.endedAt ?? now,
      });
    }
    transition(model, "reverted", { probationRestarts: 0 }, error);
    // The committed files failed re-verification on the reload: repaired when still assigned.
    if (reloadError) heal.onLoadFailure(store.model(model) ?? rec, reloadError, { report: false });
  };

  const install = async (job: Job) => {
    const rec = store.model(job.model) ?? IDLE(job.model);
    if (rec.committed?.sha256 === job.ref.sha256) {
      transition(job.model, "committed", { candidate: null, rolloutId: job.rolloutId });
      return;
    }
    transition(job.model, "verifying", { candidate: job.ref, rolloutId: job.rolloutId, probationRestarts: 0 });
    job.priorRestarts = 0;
    try {
      // Before a single byte is downloaded (architecture.md §5): a device that cannot run it says so and stops.
      checkCompatibility(job.manifest, deps.facts);
      const installed = await installedEstimates(store, deps.dirs.models);
      checkCapacity(job.model, estimateHostMB(job.manifest), installed, deps.limits);
    } catch (err) {
      transition(job.model, "failed", {}, toEdgeFleetError(err).toJSON());
      return;
    }
    await runPipeline(job, "downloading");
  };

  const reconcile = async () => {
    const acc = accepted();
    if (!acc) return;
    // Side candidates (shadow / A-B) the desired state dropped go first; a promoted one is taken over.
    await sides.reconcile(acc.desired, "remove");
    for (const action of planUpdate(store.models(), activeAssignments(acc.desired))) {
      if (closed) return;
      if (action.kind !== "install") continue;
      const job = jobFor(action.model, action.assignment.bundle.sha256);
      if (job) job.loaded = sides.takeForPromotion(job.model, job.ref.sha256);
      if (job) await install(job);
    }
    await sides.reconcile(acc.desired, "apply");
    // Between jobs (we are on the queue): nothing is being downloaded or extracted right now.
    if (!closed) await disk.run(acc.desired.assignments.map((a) => a.bundle.sha256));
    // No model waits for the disk any more (e.g. the desired state moved on): the update fault is over.
    storageRetry.settle([...store.models(), ...sides.reported().values()]);
  };

  return {
    async start() {
      const damaged: [ModelRecord, EdgeFleetError][] = [];
      for (const rec of store.models()) {
        if (!rec.committed) continue;
        try {
          await runtime.activate(await runtime.load(await installedOf(rec.model, rec.committed)));
        } catch (err) {
          log.error({ err, model: rec.model }, "could not load the committed model");
          damaged.push([rec, toEdgeFleetError(err)]);
        }
      }
      await sides.restore();
      for (const rec of store.models()) {
        // An interrupted repair resumes as a repair: never a revert, which would mark its bundle bad.
        if (isRepair(rec) && heal.resume(rec)) continue;
        const restarts = rec.state === "probation" ? rec.probationRestarts + 1 : rec.probationRestarts;
        const job = rec.candidate ? jobFor(rec.model, rec.candidate.sha256) : null;
        const policy = job?.policy.maxHostRestarts ?? 0;
        const action = planResume(rec.state, restarts, policy);
        if (action.kind === "none") continue;
        if (rec.state === "probation") store.saveModel({ ...rec, probationRestarts: restarts });
        if (job) job.priorRestarts = restarts;
        if (action.kind === "revert" || !job) {
          const err =
            action.kind === "revert" ? action : { code: "INTERNAL" as const, reason: "assignment no longer known" };
          enqueue(`revert ${rec.model}`, () => revert(rec.model, { code: err.code, message: err.reason }));
        } else enqueue(`resume ${rec.model}`, () => runPipeline(job, action.from));
      }
      // Tampered or missing files (issue 7): never loaded; re-acquired while still assigned, else reported.
      for (const [rec, e] of damaged) heal.onLoadFailure(rec, e, { report: true });
      enqueue("reconcile", reconcile);
      publishReported();
    },
    onUnreadableDesired(error) {
      rejectDesired(error, null, {
        log,
        clock,
        store,
        deviceId: deps.identity.deviceId,
        publishEvent: (e) => deps.publish.event(e),
      });
    },
    onDesired(payload) {
      const ok = acceptDesired(payload, {
        log,
        clock,
        store,
        root: deps.root,
        deviceId: deps.identity.deviceId,
        publishEvent: (e) => deps.publish.event(e),
      });
      if (!ok) return;
      publishReported();
      enqueue("reconcile", reconcile);
    },
    hostExited(installed) {
      // The runtime restarts the host and counts it; the probation monitor reads that count.
      log.warn({ model: installed.model, version: installed.version }, "model host crashed");
    },
    reported,
    publishReported,
    idle: () => queue,
    async close() {
      closed = true;
      for (const wake of [...pauseWaiters]) wake();
      recorder.close();
      sides.close();
      heal.close();
      storageRetry.close();
      await abortDownload?.();
      await queue;
    },
  };
}
