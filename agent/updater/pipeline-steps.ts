import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import { readBundleSamples } from "../../shared/samples-codec.js";
import type { HealthPolicy } from "../../shared/schemas/desired-state.js";
import type { HealthSummary, InstalledRef, ProbationReport, ReportedModel } from "../../shared/schemas/device-state.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { SamplesFile } from "../../shared/schemas/tensor.js";
import type { Envelope } from "../../shared/schemas/trust.js";
import { readVerified } from "../bundle/read-verified.js";
import { extractBundle } from "../bundle/safe-extract.js";
import type { InstalledModel, LoadedVersion } from "../runtime/model-runtime.js";
import { waitForUpdateLocks } from "../serving/swap-gate.js";
import { type DeltaOffer, errorPayload, installFromDelta } from "./delta-install.js";
import { bundleFilePath, startDownload } from "./downloader.js";
import { summarize } from "./health-summary.js";
import { type HealthRecorder, type MonitorDeps, measureBaseline, runProbation } from "./probation-monitor.js";
import type { ProbationReports } from "./probation-reports.js";
import { bytesNeeded, ensureSpace, extractionBytes } from "./space-check.js";
import type { UpdaterDeps } from "./updater-types.js";
import type { PipelineStep } from "./verdicts.js";

/** One candidate going through the pipeline; steps fill in what later steps need. */
export interface Job {
  model: string;
  ref: InstalledRef;
  /** Size of the whole bundle file, from the signed assignment. */
  size: number;
  /** A delta from the committed bundle offered instead of the full download (issue 17); null: none. */
  delta?: DeltaOffer | null;
  manifest: Manifest;
  rawManifest: Envelope<unknown>;
  policy: HealthPolicy;
  /** Deadline for live sequences on the version this candidate replaces (the assignment's, issue 18). */
  sequenceDrainMs?: number;
  rolloutId: string | null;
  loaded: LoadedVersion | null;
  /** Load as background work (a shadow candidate): see LoadOptions.background. */
  background?: boolean;
  samples: SamplesFile | null;
  /** The previously serving version, kept warm during probation when the budget allows (blue-green). */
  previous: LoadedVersion | null;
  baseline: HealthSummary | null;
  /** Agent restarts already spent in this candidate's probation. */
  priorRestarts: number;
  /** The final probation report when the candidate failed it (attached to the revert). */
  report: ProbationReport | null;
}

export interface StepContext {
  deps: UpdaterDeps;
  recorder: HealthRecorder;
  monitorDeps: MonitorDeps;
  reports: ProbationReports;
  budgetBytes: number;
  progress: Map<string, { bytes: number; total: number }>;
  /** Swaps waiting for update locks (reported as `deferring`). */
  deferring: Map<string, NonNullable<ReportedModel["deferring"]>>;
  publishReported(): void;
  installedOf(model: string, ref: InstalledRef): Promise<InstalledModel>;
  isClosed(): boolean;
  setAbortDownload(abort: (() => Promise<void>) | null): void;
  /** The disk GC (between jobs, as this step is): run when a space check finds too little room. */
  collectGarbage?: () => Promise<{ bytes: number }>;
}

/**
 * The I/O of each pipeline step (architecture.md §5), run in order by the updater's executor, which owns the
 * transitions, failures and reverts. A step throws to fail; it never transitions by itself.
 */
export function createPipelineSteps(ctx: StepContext): Record<PipelineStep, (job: Job) => Promise<void>> {
  const { deps, recorder, monitorDeps, reports, budgetBytes, progress, publishReported, installedOf } = ctx;
  const { log, clock, store, runtime } = deps;
  /** Issue 20 §2: refuse with DISK_FULL before a byte is written when the step cannot fit. */
  const checkSpace = async (job: Job, step: "downloading" | "staging") => {
    const dest = join(deps.dirs.models, job.model, job.ref.sha256);
    const complete = await exists(bundleFilePath(deps.dirs.downloads, job.ref.sha256));
    const partial = step === "downloading" ? (store.downloadProgress(job.ref.sha256) ?? 0) : 0;
    const needed = bytesNeeded({
      bundleSize: job.size,
      downloaded: complete || step === "staging" ? job.size : Math.min(partial, job.size),
      extracted: await exists(dest),
      extractBytes: extractionBytes(job.manifest, Buffer.byteLength(JSON.stringify(job.rawManifest))),
    });
    await ensureSpace({
      path: step === "downloading" ? deps.dirs.downloads : deps.dirs.staging,
      needed,
      what: `${step} ${job.model}@${job.ref.version}`,
      log,
      ...(ctx.collectGarbage ? { collectGarbage: ctx.collectGarbage } : {}),
    });
  };
  /**
   * Issue 17: install from the offered delta when the device still has its base. True when it did; on any
   * failure the reason goes out as an `update.delta` event and the full bundle follows (never a verdict
   * against the bundle: the delta is only a shortcut to the same signed bytes).
   */
  const tryDelta = async (job: Job, delta: DeltaOffer): Promise<boolean> => {
    const dest = join(deps.dirs.models, job.model, job.ref.sha256);
    if ((await exists(dest)) || (await exists(bundleFilePath(deps.dirs.downloads, job.ref.sha256)))) return false;
    const event = (outcome: "applied" | "fallback", error?: unknown) =>
      deps.publish.event({
        type: "update.delta",
        deviceId: deps.identity.deviceId,
        ts: new Date(clock.now()).toISOString(),
        eventSeq: store.nextEventSeq(),
        model: job.model,
        bundle: job.ref.sha256,
        delta: delta.sha256,
        outcome,
        bytes: delta.size,
        fullBytes: job.size,
        ...(error === undefined ? {} : { error: errorPayload(error) }),
      });
    try {
      await installFromDelta({
        model: job.model,
        bundle: job.ref.sha256,
        manifest: job.manifest,
        rawManifest: job.rawManifest,
        delta,
        dirs: deps.dirs,
        download: { store, channel: deps.channel, clock, log, ...deps.download },
        setAbort: ctx.setAbortDownload,
        ...(deps.pauseInDelta
          ? { beforeRename: () => new Promise<void>((r) => clock.setTimeout(r, deps.pauseInDelta ?? 0)) }
          : {}),
      });
    } catch (err) {
      if (ctx.isClosed()) throw err; // shutting down: resume (and retry the delta) after the restart
      log.warn({ model: job.model, delta: delta.sha256, err }, "delta failed; downloading the full bundle");
      event("fallback", err);
      return false;
    }
    log.info({ model: job.model, delta: delta.sha256, bytes: delta.size, full: job.size }, "installed from delta");
    event("applied");
    return true;
  };
  return {
    downloading: async (job) => {
      if (job.delta && (await tryDelta(job, job.delta))) return;
      await checkSpace(job, "downloading");
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
      ctx.setAbortDownload(dl.close);
      try {
        await dl.done;
      } finally {
        ctx.setAbortDownload(null);
        progress.delete(job.model);
      }
    },
    staging: async (job) => {
      const dest = join(deps.dirs.models, job.model, job.ref.sha256);
      if (await exists(dest)) return; // renamed into place only after every check passed
      await checkSpace(job, "staging");
      await extractBundle({
        bundlePath: join(deps.dirs.downloads, `${job.ref.sha256}.bundle`),
        rawManifest: job.rawManifest,
        manifest: job.manifest,
        stagingParent: deps.dirs.staging,
        destDir: dest,
      });
    },
    loading: async (job) => {
      // A promoted A/B candidate arrives already loaded and running: no second host. (A shadow host never
      // does: it runs as background work, see side-candidates.ts `takeForPromotion`.)
      if (job.loaded && runtime.isLoaded(job.loaded)) return;
      job.loaded = await runtime.load(await installedOf(job.model, job.ref), { background: job.background === true });
    },
    "smoke-testing": async (job) => {
      if (!job.loaded) {
        job.loaded = await runtime.load(await installedOf(job.model, job.ref), { background: job.background === true });
      }
      const dir = join(deps.dirs.models, job.model, job.ref.sha256);
      // Hashed as read: a change after the load's re-check is local damage, not a failed smoke test
      // (which would condemn the bundle).
      const read = async (name: string): Promise<Buffer> => {
        const listed = job.manifest.files.find((f) => f.path === name);
        const path = join(dir, name);
        return listed ? readVerified(path, listed.sha256) : readFile(path);
      };
      job.samples = await readBundleSamples(read);
      const result = await runtime.smokeTest(job.loaded, job.samples);
      if (!result.ok) {
        const failed = result.samples.filter((s) => !s.ok);
        const now = new Date(clock.now()).toISOString();
        job.report = {
          verdict: "failed",
          reason: "SMOKE_TEST_FAILED",
          message: failed.map((f) => f.error?.message ?? f.name).join("; "),
          startedAt: now,
          endedAt: now,
          candidate: summarize(job.ref, recorder.since(job.ref.sha256, 0), {
            hostRestarts: runtime.restarts(job.loaded),
            rssBytes: await job.loaded.rss(),
          }),
          baseline: null,
        };
        throw new EdgeFleetError("SMOKE_TEST_FAILED", `smoke test failed for ${job.model}@${job.ref.version}`, {
          details: {
            samples: failed,
          },
        });
      }
    },
    swapping: async (job) => {
      if (!job.loaded || !job.samples) throw new EdgeFleetError("INTERNAL", "swap without a smoke-tested candidate");
      const prev = runtime.serving().get(job.model) ?? null;
      job.baseline = prev ? await measureBaseline(monitorDeps, prev, job.samples) : null;
      // Blue-green only when both hosts fit the profile's memory budget and host count.
      const rss = (await Promise.all(runtime.loaded().map((l) => l.rss()))).reduce<number>((a, b) => a + (b ?? 0), 0);
      const keepPrevious =
        prev !== null && rss <= budgetBytes && runtime.loaded().length <= deps.limits.maxLoadedModels;
      // Apps' update locks (issue 8): wait here, with the candidate warm and smoke-tested, so the swap
      // itself stays one atomic switch the moment the last lock goes.
      if (deps.locks) {
        await waitForUpdateLocks({
          locks: deps.locks,
          clock,
          maxWaitSeconds: job.policy.maxLockWaitSeconds,
          onDefer: (d) => {
            ctx.deferring.set(job.model, d);
            publishReported();
          },
        });
        if (ctx.deferring.delete(job.model)) publishReported();
        if (ctx.isClosed()) throw new EdgeFleetError("INTERNAL", "agent closing while waiting for update locks");
      }
      log.info({ model: job.model, keepPrevious, rssBytes: rss }, "swapping to candidate");
      const drain = job.sequenceDrainMs;
      await runtime.activate(job.loaded, { keepPrevious, ...(drain !== undefined ? { sequenceDrainMs: drain } : {}) });
      job.previous = keepPrevious ? prev : null;
    },
    probation: async (job) => {
      if (!job.loaded || !job.samples) throw new EdgeFleetError("INTERNAL", "probation without a serving candidate");
      const { model } = job;
      const outcome = await runProbation(monitorDeps, {
        candidate: job.loaded,
        samples: job.samples,
        policy: job.policy,
        baseline: job.baseline,
        previous: job.previous,
        priorRestarts: job.priorRestarts,
        memoryBudgetBytes: budgetBytes,
        startedAt: clock.now(),
        onProgress: (r) => {
          reports.pending(model, r);
          publishReported();
        },
        closed: ctx.isClosed,
      });
      if (!outcome) throw new EdgeFleetError("INTERNAL", "agent closing during probation");
      job.report = outcome.report;
      if (outcome.judgement.verdict === "failed") {
        throw new EdgeFleetError(outcome.judgement.code, outcome.judgement.reason);
      }
    },
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
