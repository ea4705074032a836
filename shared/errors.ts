/**
 * One error type for the whole system, with a stable string `code`.
 * Codes are part of the public contract (HTTP bodies, MQTT event payloads, socket API):
 * never rename one; add new ones. Documented in docs/errors.md.
 * The HTTP status mapping lives in `http-status.ts`, the only place that knows it.
 */
export const ERROR_CODES = [
  // input validation
  "BAD_REQUEST",
  "VALIDATION_FAILED",
  "PAYLOAD_TOO_LARGE",
  "NOT_FOUND",
  "CONFLICT",
  "UNAUTHORIZED",
  "FORBIDDEN",
  "RANGE_NOT_SATISFIABLE",
  // trust (architecture.md §3)
  "SIGNATURE_THRESHOLD_NOT_MET",
  "UNKNOWN_ROLE",
  "WRONG_DEVICE",
  "SEQ_REPLAYED",
  "EXPIRED",
  "RELEASE_COUNTER_ROLLBACK",
  "MANIFEST_MISMATCH",
  /** A release (bundle or re-release) waits for offline release signatures (docs/security.md). */
  "RELEASE_NOT_SIGNED",
  // bundles (architecture.md §2)
  "BUNDLE_HASH_MISMATCH",
  "BUNDLE_SIZE_MISMATCH",
  "BUNDLE_UNSAFE_ENTRY",
  "BUNDLE_UNLISTED_ENTRY",
  "BUNDLE_MISSING_FILE",
  "BUNDLE_TOO_LARGE",
  "BUNDLE_MARKED_BAD",
  "BUNDLE_SAMPLES_INVALID",
  /**
   * A genuine bundle's extracted files kept changing on the device between staging and loading;
   * the local copies were re-made and damaged again. The bundle itself is not marked bad.
   */
  "LOCAL_INTEGRITY_FAILED",
  "INCOMPATIBLE",
  // download / transport
  "DOWNLOAD_FAILED",
  "CHUNK_INVALID",
  "TIMEOUT",
  "NOT_CONNECTED",
  // storage (issue 20): local I/O faults; never evidence against a bundle
  /** The device's data directory has no room for what the step needs (ENOSPC, SQLITE_FULL, or refused early). */
  "DISK_FULL",
  /** The device's data directory cannot be written (EROFS, EACCES/EPERM on a file the agent owns). */
  "STORAGE_READ_ONLY",
  /** Another local I/O failure (EIO, EMFILE, ENFILE, ...): retried, never condemns a bundle. */
  "STORAGE_FAILED",
  // runtime
  "MODEL_LOAD_FAILED",
  "MODEL_NOT_READY",
  "INFERENCE_FAILED",
  "SMOKE_TEST_FAILED",
  "HOST_CRASHED",
  "INVALID_TENSOR",
  // probation verdicts (architecture.md §5)
  "LATENCY_REGRESSION",
  "ERROR_RATE_EXCEEDED",
  "NON_FINITE_OUTPUT",
  "MEMORY_BUDGET_EXCEEDED",
  // telemetry (architecture.md §5, issue 6)
  "TELEMETRY_MALFORMED",
  "TELEMETRY_DEVICE_MISMATCH",
  "TELEMETRY_TOO_LARGE",
  "TELEMETRY_SEQ_BACKWARDS",
  // registry
  /** A model build was running when the fleet server stopped; nothing of it can finish (upload again). */
  "BUILD_INTERRUPTED",
  // governance (issue 21, docs/operations.md "Lifecycle and approvals")
  /** The model version is retired: no rollout may start, resume or be promoted with it. */
  "MODEL_VERSION_RETIRED",
  /** The rollout would take an unapproved version past its model's canary share (the approval policy). */
  "APPROVAL_REQUIRED",
  /** The lifecycle table does not allow this stage change (or not by this cause). */
  "STAGE_TRANSITION_INVALID",
  // generic
  "INTERNAL",
  // delta bundles (issue 17): the agent falls back to the full bundle; never condemns a bundle
  /** A delta artifact does not parse, exceeds its bounds, or refers to tensors the base lacks. */
  "DELTA_INVALID",
  /** The device's committed model is not the base the delta was built on. */
  "DELTA_BASE_MISMATCH",
  /** The model rebuilt from a delta does not hash to the target's signed SHA-256. */
  "DELTA_RESULT_MISMATCH",
  // replicas (issue 14, docs/operations.md "Replicas")
  /** A rollout command reached a standby replica and no leader is known (or it was already forwarded once). */
  "NO_LEADER",
  // fleet server store (issue 14)
  /** The fleet server's PostgreSQL store did not answer in time or the connection is gone (docs/operations.md). */
  "STORE_UNAVAILABLE",
  // sequences (issue 18, docs/protocol.md "Sequences")
  /** The model already has its maximum of live sequences: a new one can start once another ends or expires. */
  "SEQUENCE_LIMIT",
  /** A frame of a sequence that was never started, already ended, or expired. */
  "SEQUENCE_UNKNOWN",
  /** The sequence's state is gone (its model host crashed or was stopped): start a new sequence. */
  "SEQUENCE_LOST",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorJson {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export class EdgeFleetError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  /**
   * `details` reach clients (HTTP bodies, MQTT events); `cause` stays on this side (logs). One
   * options object, so a cause can never be passed where details go (issue 23).
   */
  constructor(code: ErrorCode, message: string, options: { details?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "EdgeFleetError";
    this.code = code;
    this.details = options.details;
  }

  toJSON(): ErrorJson {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Any thrown value to an EdgeFleetError; unknown errors become INTERNAL, keeping the cause. */
export function toEdgeFleetError(err: unknown, fallback: ErrorCode = "INTERNAL"): EdgeFleetError {
  if (err instanceof EdgeFleetError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EdgeFleetError(fallback, message, { cause: err });
}

export function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}
