import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { ModelNameSchema, SemverSchema } from "../../shared/schemas/common.js";
import type { SequenceStore } from "../runtime/sequence-store.js";
import { fullJitterDelay } from "../transport/backoff.js";
import { type StreamJob, type StreamJobDefinition, startStreamJob } from "./stream-job.js";

/**
 * One stream job (issue 18, stream-job.ts) from the agent config's `streamJobs` array: frames appended
 * to `input.path` (NDJSON) run as one sequence of `model`, results appended to `output.path`.
 */
export const StreamJobDefinitionSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and dashes"),
    model: ModelNameSchema,
    /** Pinned version; the model's serving version when absent. */
    version: SemverSchema.optional(),
    input: z.object({ path: z.string().min(1) }).strict(),
    output: z.object({ path: z.string().min(1) }).strict(),
    /** How often the input file is checked for new lines. */
    pollMs: z.number().int().min(10).max(60_000).default(200),
    enabled: z.boolean().default(true),
  })
  .strict();
export type StreamJobConfig = z.infer<typeof StreamJobDefinitionSchema>;

export const StreamJobsConfigSchema = z
  .array(StreamJobDefinitionSchema)
  .max(32)
  .default([])
  .refine((jobs) => new Set(jobs.map((j) => j.name)).size === jobs.length, "stream job names must be unique")
  // Two jobs appending to one file (or one progress record) would corrupt each other's resume point.
  .refine(
    (jobs) => new Set(jobs.map((j) => j.output.path)).size === jobs.length,
    "stream jobs must not share an output path",
  );

export interface StreamJobsDeps {
  jobs: StreamJobConfig[];
  sequences: SequenceStore;
  /** Whether `model` has a serving version now: a job starts only then (frames are not answered with "not ready" after a restart). */
  isServed: (model: string) => boolean;
  clock: Clock;
  log: Logger;
  random?: () => number;
  /** Restart backoff bounds (full jitter); defaults 1 s .. 60 s. */
  backoff?: { baseMs: number; capMs: number };
}

export interface StreamJobs {
  /** Supervised jobs: name → frames done (across restarts), null while not running. */
  status(): { name: string; running: boolean; frames: number | null; restarts: number }[];
  /** Stops every job after its batch under way (its progress recorded, resumed at the next start). */
  close(): Promise<void>;
}

/**
 * Runs the configured stream jobs under supervision, like the batch job scheduler runs its jobs: a job
 * that fails (a fault at its start, its loop dying) is logged and started again after a full-jitter
 * backoff; all stop on shutdown. Resuming is the job's own (its progress file beside the output).
 */
export function startStreamJobs(deps: StreamJobsDeps): StreamJobs {
  const random = deps.random ?? Math.random;
  const backoff = deps.backoff ?? { baseMs: 1000, capMs: 60_000 };
  let closing = false;
  const wakers = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        wakers.delete(done);
        t.cancel();
        resolve();
      };
      const t = deps.clock.setTimeout(done, ms);
      wakers.add(done);
    });

  const states = deps.jobs.filter((j) => j.enabled).map((def) => ({ def, job: null as StreamJob | null, restarts: 0 }));

  const supervise = async (s: (typeof states)[number]) => {
    const log = deps.log.child({ streamJob: s.def.name });
    const def: StreamJobDefinition = {
      name: s.def.name,
      model: s.def.model,
      ...(s.def.version ? { version: s.def.version } : {}),
      input: s.def.input,
      output: s.def.output,
    };
    let failures = 0;
    while (!closing) {
      if (!deps.isServed(def.model)) {
        await sleep(s.def.pollMs);
        continue;
      }
      try {
        s.job = await startStreamJob(def, {
          sequences: deps.sequences,
          clock: deps.clock,
          log: deps.log,
          pollMs: s.def.pollMs,
        });
        log.info({ model: def.model, frames: s.job.frames() }, "stream job started");
        if (closing) await s.job.stop();
        await s.job.done;
        s.job = null;
        return; // stopped by close()
      } catch (err) {
        s.job = null;
        if (closing) return;
        const delay = fullJitterDelay(failures++, random, backoff);
        s.restarts++;
        log.error({ err, retryInMs: delay }, "stream job failed; restarting after a backoff");
        await sleep(delay);
      }
    }
  };
  const loops = states.map((s) => supervise(s));

  return {
    status: () =>
      states.map((s) => ({
        name: s.def.name,
        running: s.job !== null,
        frames: s.job?.frames() ?? null,
        restarts: s.restarts,
      })),
    async close() {
      closing = true;
      for (const wake of [...wakers]) wake();
      await Promise.all(states.map((s) => s.job?.stop().catch(() => undefined)));
      await Promise.all(loops);
    },
  };
}
