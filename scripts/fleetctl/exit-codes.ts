import type { RolloutView } from "../../shared/http/rollouts.js";
import { ApiError } from "./api-client.js";

/**
 * fleetctl's exit codes (issue 21, docs/operations.md "fleetctl in a pipeline"): stable numbers a CI
 * job can branch on. Every command uses them; `--json` output never changes them.
 */
export const EXIT = {
  OK: 0,
  /** Anything else that failed: a server error, a refused command (its code is printed). */
  FAILED: 1,
  /** Bad flags or flag files, a server that cannot be reached or answers off-contract. */
  USAGE: 2,
  /** `models validate`: the model would be refused. */
  VALIDATION_FAILED: 3,
  /** `models validate`: fp32 passes, the int8 variant does not. */
  ACCEPTED_FP32_ONLY: 4,
  /** A waited-for rollout stopped at a gate (paused by the planner: a gate or the abort threshold). */
  GATE_FAILED: 5,
  /** A waited-for rollout rolled back (by its abort action or an operator). */
  ROLLED_BACK: 6,
  /** `--timeout` passed while the rollout was still moving. */
  TIMED_OUT: 7,
  /** The token is missing, wrong, expired or lacks the role (401 / 403). */
  UNAUTHORIZED: 8,
} as const;

/** The exit code for where a waited-for rollout ended. Pure. */
export function exitForRollout(r: Pick<RolloutView, "status" | "reason">): number {
  switch (r.status) {
    case "completed":
      return EXIT.OK;
    case "paused":
      // The planner pauses with the gate's reason; an operator's pause is not a gate verdict.
      return r.reason === "paused by operator" ? EXIT.FAILED : EXIT.GATE_FAILED;
    case "rolling-back":
    case "rolled-back":
      return EXIT.ROLLED_BACK;
    case "running":
      return EXIT.TIMED_OUT;
    default:
      // aborted, superseded: stopped by someone, not by the rollout's own gates.
      return EXIT.FAILED;
  }
}

/** The exit code for an error that ended a command. Pure. */
export function exitForError(err: unknown): number {
  if (!(err instanceof ApiError)) return EXIT.FAILED;
  if (err.status === 401 || err.status === 403) return EXIT.UNAUTHORIZED;
  if (err.code === "TIMEOUT") return EXIT.TIMED_OUT;
  // UNREACHABLE and BAD_RESPONSE are fleetctl's own (status 0): not the server's verdict.
  return err.status === 0 ? EXIT.USAGE : EXIT.FAILED;
}
