import type { Clock } from "../../shared/clock.js";
import { type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { JobTelemetry } from "../../shared/schemas/telemetry.js";
import type { InferRequest, InferResult } from "../runtime/model-runtime.js";
import type { JobDefinition } from "./job-config.js";
import type { ItemInputs, JobInput, JobOutput, OutputRecord } from "./job-io.js";
import { chunkItems, isRetryable, type JobProgress, paceDelayMs, progressStepReached } from "./job-plan.js";
import type { JobStateStore } from "./job-state.js";

export type JobReport = Omit<JobTelemetry, "seq" | "kind" | "ts">;

export interface JobRunnerDeps {
  log: Logger;
  clock: Clock;
  state: JobStateStore;
  infer(req: InferRequest): Promise<InferResult>;
  /** Telemetry (start/resume, every 10 %, end). */
  report(r: JobReport): void;
  sleep(ms: number): Promise<void>;
  /** True once the agent is shutting down: the run stops between chunks and stays resumable. */
  stopping(): boolean;
}

/** A run in progress in this process, as `GET /v1/jobs` shows it. */
export interface LiveRun {
  runId: string;
  phase: "running" | "waiting-for-model";
  resumed: boolean;
  version: string | null;
  progress: JobProgress;
}

export interface RunPlan {
  runId: string;
  resumed: boolean;
  /** Items this run still has to do, in order. */
  remaining: string[];
  /** Items of this run already committed. */
  doneInRun: number;
}

/**
 * Executes one run of a job: reads each chunk's inputs, infers them (bounded concurrency), and commits
 * the chunk's outputs at once. An item whose model is temporarily unavailable is retried for up to
 * `modelWaitSeconds`; an item that fails for its own reasons (bad tensor) is committed with its error.
 */
export async function executeRun(
  deps: JobRunnerDeps,
  job: JobDefinition,
  io: { input: JobInput; output: JobOutput },
  plan: RunPlan,
  live: LiveRun,
): Promise<"completed" | "stopped"> {
  const { log, clock } = deps;
  const p = live.progress;
  const startedHere = clock.now();
  let lastReported = p.done;
  const report = (phase: JobReport["phase"], error?: ErrorJson) =>
    deps.report({
      job: job.name,
      runId: plan.runId,
      phase,
      model: job.model,
      version: live.version,
      total: p.total,
      done: p.done,
      failed: p.failed,
      ...(error ? { error } : {}),
    });
  report(plan.resumed ? "resumed" : "started");
  log.info(
    { job: job.name, runId: plan.runId, total: p.total, done: p.done, resumed: plan.resumed },
    "job run started",
  );

  const versionSoFar = () => live.version ?? job.version ?? "";
  const inferItem = async (item: ItemInputs): Promise<OutputRecord> => {
    if ("error" in item) {
      return { item: item.id, model: job.model, version: versionSoFar(), outputs: null, error: item.error };
    }
    let waitingSince: number | null = null;
    for (;;) {
      try {
        const res = await deps.infer({
          model: job.model,
          inputs: item.inputs,
          ...(job.version ? { version: job.version } : {}),
        });
        live.phase = "running";
        live.version = res.version;
        return { item: item.id, model: res.model, version: res.version, outputs: res.outputs, error: null };
      } catch (err) {
        const e = toEdgeFleetError(err);
        if (!isRetryable(e.code)) {
          return { item: item.id, model: job.model, version: versionSoFar(), outputs: null, error: e.toJSON() };
        }
        waitingSince ??= clock.now();
        if (clock.now() - waitingSince > job.modelWaitSeconds * 1000 || deps.stopping()) throw e;
        live.phase = "waiting-for-model";
        await deps.sleep(500);
      }
    }
  };

  for (const chunk of chunkItems(plan.remaining, job.chunkSize)) {
    if (deps.stopping()) return "stopped";
    const delay = paceDelayMs(p.processedHere, clock.now() - startedHere, job.maxItemsPerSecond);
    if (delay > 0) await deps.sleep(delay);
    const items = await io.input.read(chunk);
    const records: OutputRecord[] = new Array(items.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < items.length; i = next++) records[i] = await inferItem(items[i]!);
    };
    await Promise.all(Array.from({ length: Math.min(job.concurrency, items.length) }, worker));
    // The commit is the "done" record: nothing of this chunk counts before it, all of it after.
    await io.output.commit(job.name, plan.runId, records, clock.now());
    const failed = records.filter((r) => r.error !== null).length;
    p.done += records.length;
    p.failed += failed;
    p.processedHere += records.length;
    deps.state.progress(job.name, plan.runId, p);
    if (failed > 0) log.warn({ job: job.name, runId: plan.runId, failed }, "job items failed");
    if (p.done < p.total && progressStepReached(lastReported, p.done, p.total)) {
      lastReported = p.done;
      report("progress");
    }
  }
  report("completed");
  log.info(
    { job: job.name, runId: plan.runId, total: p.total, failed: p.failed, processedHere: p.processedHere },
    "job run completed",
  );
  return "completed";
}
