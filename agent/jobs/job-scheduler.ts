import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import cron, { type ScheduledTask } from "node-cron";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { InferRequest, InferResult } from "../runtime/model-runtime.js";
import type { JobDefinition } from "./job-config.js";
import { type JobInput, type JobOutput, openJobInput, openJobOutput } from "./job-io.js";
import { remainingItems, runIdFor } from "./job-plan.js";
import { executeRun, type JobReport, type LiveRun, type RunPlan } from "./job-runner.js";
import { type JobRun, openJobState } from "./job-state.js";

export interface JobSchedulerDeps {
  log: Logger;
  clock: Clock;
  /** `jobs.db` (run records) lives here. */
  dataDir: string;
  jobs: readonly JobDefinition[];
  infer(req: InferRequest): Promise<InferResult>;
  report(r: JobReport): void;
}

export interface JobStatus {
  name: string;
  schedule: string;
  model: string;
  version: string | null;
  mode: JobDefinition["mode"];
  enabled: boolean;
  /** A run is being planned or executed in this process. */
  busy: boolean;
  /** The run in progress in this process, with live progress. */
  active: LiveRun | null;
  /** The last run this process executed to its end (what it found done, what it processed). */
  lastHere: LiveRun | null;
  /** Latest runs, newest first (from jobs.db). */
  runs: JobRun[];
}

export interface JobScheduler {
  /** Resumes runs a previous process left unfinished, then schedules every enabled job. */
  start(): void;
  /** Starts a run now (as a cron tick would); null when there is nothing to do or one is running. */
  trigger(name: string): Promise<{ runId: string | null }>;
  list(): JobStatus[];
  /** `GET /v1/jobs`, `GET /v1/jobs/{name}`, `POST /v1/jobs/{name}/run` on the socket API (before it listens). */
  registerRoutes(server: FastifyInstance): void;
  close(): Promise<void>;
}

/**
 * Scheduled batch jobs (issue 8): node-cron ticks start runs, one at a time per job; a run left
 * `running` in jobs.db by a killed process is resumed at start, skipping items already committed.
 */
export function createJobScheduler(deps: JobSchedulerDeps): JobScheduler {
  const { log, clock } = deps;
  const state = openJobState(join(deps.dataDir, "jobs.db"), log);
  const byName = new Map(deps.jobs.map((j) => [j.name, j]));
  const active = new Map<string, { live: LiveRun; done: Promise<void> }>();
  const lastHere = new Map<string, LiveRun>();
  const tasks: ScheduledTask[] = [];
  let stopping = false;
  let runCounter = state.count();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      clock.setTimeout(resolve, ms);
    });
  const runnerDeps = {
    log,
    clock,
    state,
    infer: deps.infer,
    report: deps.report,
    sleep,
    stopping: () => stopping,
  };

  /** Lists the input and what is committed; for a fresh run, null when no item is left. */
  async function plan(job: JobDefinition, io: { input: JobInput; output: JobOutput }, resume: JobRun | null) {
    const all = await io.input.list();
    const doneInRun = resume ? await io.output.doneItems(job.name, resume.runId) : new Set<string>();
    const skip = job.mode === "incremental" ? await io.output.doneItems(job.name, null) : doneInRun;
    const remaining = remainingItems(all, skip);
    if (!resume && remaining.length === 0) return null;
    const runId = resume?.runId ?? runIdFor(clock.now(), ++runCounter);
    const p: RunPlan = { runId, resumed: resume !== null, remaining, doneInRun: doneInRun.size };
    return p;
  }

  /** Plans and starts a run in the background; resolves once it is planned. */
  async function launch(job: JobDefinition, resume: JobRun | null): Promise<string | null> {
    if (active.has(job.name) || stopping) return null;
    // Claim the slot before any await so a cron tick and a trigger cannot both start a run.
    const slot = { live: null as LiveRun | null, done: Promise.resolve() };
    active.set(job.name, slot as { live: LiveRun; done: Promise<void> });
    let io: { input: JobInput; output: JobOutput } | null = null;
    let planned: RunPlan | null;
    try {
      io = { input: openJobInput(job.input), output: openJobOutput(job.output) };
      planned = await plan(job, io, resume);
    } catch (err) {
      io?.input.close();
      io?.output.close();
      active.delete(job.name);
      if (resume) state.finish(job.name, resume.runId, "failed", clock.now(), toEdgeFleetError(err).toJSON());
      log.error({ err, job: job.name }, "job run could not start");
      return null;
    }
    if (!planned) {
      io.input.close();
      io.output.close();
      active.delete(job.name);
      log.debug({ job: job.name }, "job tick: no new items");
      return null;
    }
    const runPlan = planned;
    if (resume) state.markResumed(job.name, runPlan.runId);
    else
      state.begin({
        job: job.name,
        runId: runPlan.runId,
        model: job.model,
        version: job.version ?? null,
        startedAt: clock.now(),
      });
    const live: LiveRun = {
      runId: runPlan.runId,
      phase: "running",
      resumed: runPlan.resumed,
      version: null,
      progress: {
        total: runPlan.doneInRun + runPlan.remaining.length,
        done: runPlan.doneInRun,
        failed: resume?.failed ?? 0,
        doneAtStart: runPlan.doneInRun,
        processedHere: 0,
      },
    };
    slot.live = live;
    const openIo = io;
    slot.done = executeRun(runnerDeps, job, openIo, runPlan, live)
      .then((outcome) => {
        if (outcome === "completed") state.finish(job.name, runPlan.runId, "completed", clock.now());
      })
      .catch((err: unknown) => {
        const e = toEdgeFleetError(err);
        log.error({ err, job: job.name, runId: runPlan.runId }, "job run failed");
        if (stopping) return; // interrupted by the shutdown: resumable, not failed
        state.finish(job.name, runPlan.runId, "failed", clock.now(), e.toJSON());
        deps.report({
          job: job.name,
          runId: runPlan.runId,
          phase: "failed",
          model: job.model,
          version: live.version,
          total: live.progress.total,
          done: live.progress.done,
          failed: live.progress.failed,
          error: e.toJSON(),
        });
      })
      .finally(() => {
        openIo.input.close();
        openIo.output.close();
        lastHere.set(job.name, live);
        active.delete(job.name);
      });
    return runPlan.runId;
  }

  const jobNamed = (name: string): JobDefinition => {
    const job = byName.get(name);
    if (!job) throw new EdgeFleetError("NOT_FOUND", `no job named ${name}`);
    return job;
  };

  const trigger = async (name: string) => ({ runId: await launch(jobNamed(name), null) });

  const list = (): JobStatus[] =>
    deps.jobs.map((j) => ({
      name: j.name,
      schedule: j.schedule,
      model: j.model,
      version: j.version ?? null,
      mode: j.mode,
      enabled: j.enabled,
      busy: active.has(j.name),
      active: active.get(j.name)?.live ?? null,
      lastHere: lastHere.get(j.name) ?? null,
      runs: state.recent(j.name, 5),
    }));

  return {
    start() {
      for (const job of deps.jobs) {
        if (!job.enabled) continue;
        const unfinished = state.unfinished(job.name);
        if (unfinished) void launch(job, unfinished);
        tasks.push(
          cron.schedule(job.schedule, () => void launch(job, null), {
            name: `job-${job.name}`,
            noOverlap: true,
            ...(job.timezone ? { timezone: job.timezone } : {}),
          }),
        );
      }
      if (deps.jobs.length > 0) log.info({ jobs: deps.jobs.map((j) => j.name) }, "batch jobs scheduled");
    },
    trigger,
    list,
    registerRoutes(server) {
      server.get("/v1/jobs", async () => ({ jobs: list() }));
      server.get<{ Params: { name: string } }>("/v1/jobs/:name", async (req) => {
        jobNamed(req.params.name);
        return list().find((j) => j.name === req.params.name);
      });
      server.post<{ Params: { name: string } }>("/v1/jobs/:name/run", async (req, reply) => {
        const res = await trigger(req.params.name);
        void reply.code(res.runId ? 202 : 200);
        return res;
      });
    },
    async close() {
      stopping = true;
      await Promise.all(tasks.map((t) => t.destroy()));
      await Promise.all([...active.values()].map((a) => a.done));
      state.close();
    },
  };
}
