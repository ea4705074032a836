import { z } from "zod";
import { Sha256Schema } from "./common.js";

/**
 * The fleet server's persisted rollout state (issue 23, rows parsed at the store): the store
 * decodes these columns with the schemas below, so the planner, executor and view receive typed
 * values. The rollout view (shared/http/rollouts.ts) shows parts of them.
 */

/** The planner's state besides the status: stage, soak clock, serving mode, reason. */
export const EngineStateSchema = z.object({
  stage: z.number().int().min(0),
  stageStartedAt: z.number(),
  /** When every device of the current stage had a verdict; the soak runs from here. */
  soakStartedAt: z.number().nullable(),
  /** How assignments are served; `promote` turns shadow/ab into active. */
  servingMode: z.enum(["active", "shadow", "ab"]),
  /** Why the rollout is paused, aborted or rolled back. */
  reason: z.string().nullable(),
  /**
   * The accuracy gate's one decision for `stage` (issue 22: a fixed-sample test looks once; see
   * fleet-server/rollout/accuracy-gate.ts). Null until decided; cleared by resume.
   */
  accuracy: z
    .object({
      stage: z.number().int().min(0),
      verdict: z.enum(["pass", "fail", "insufficient"]),
      detail: z.string(),
      candidate: z.object({ n: z.number(), accuracy: z.number().nullable() }),
      baseline: z.object({ n: z.number(), accuracy: z.number().nullable() }),
      differencePercent: z.number().nullable(),
      lowerPercent: z.number().nullable(),
      upperPercent: z.number().nullable(),
    })
    .nullable()
    .default(null),
});
export type EngineState = z.infer<typeof EngineStateSchema>;

/** Where a rollout member stands in the planner's per-device state machine. */
export const MEMBER_PHASES = ["download", "install", "probation", "done"] as const;
export const MemberPhaseSchema = z.enum(MEMBER_PHASES);
export type MemberPhase = z.infer<typeof MemberPhaseSchema>;

/** What a device ran for the model before a rollout assigned it (the rollback target). */
export const PreviousRefSchema = z.object({
  sha256: Sha256Schema,
  version: z.string(),
  variant: z.string(),
  releaseCounter: z.number().int().min(0),
});
export type PreviousRef = z.infer<typeof PreviousRefSchema>;
