import type { ErrorCode } from "./errors.js";

/**
 * The single mapping from error codes to HTTP status, used by the fleet server API and the agent
 * socket. A complete `Record`: a new code does not compile until someone decides its status
 * (issue 23), instead of silently becoming a 500. docs/errors.md shows the same table; a unit test
 * keeps the two equal.
 */
const STATUS: Record<ErrorCode, number> = {
  // input validation
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  RANGE_NOT_SATISFIABLE: 416,
  // Trust failures happen on the device (MQTT events, reported state), never as a caller's mistake
  // over HTTP; the two the fleet server's signature upload raises are the caller's (422).
  SIGNATURE_THRESHOLD_NOT_MET: 422,
  UNKNOWN_ROLE: 500,
  WRONG_DEVICE: 500,
  SEQ_REPLAYED: 500,
  EXPIRED: 500,
  RELEASE_COUNTER_ROLLBACK: 500,
  MANIFEST_MISMATCH: 422,
  RELEASE_NOT_SIGNED: 409,
  // bundles: the device's verdicts, reported over MQTT
  BUNDLE_HASH_MISMATCH: 500,
  BUNDLE_SIZE_MISMATCH: 500,
  BUNDLE_UNSAFE_ENTRY: 500,
  BUNDLE_UNLISTED_ENTRY: 500,
  BUNDLE_MISSING_FILE: 500,
  BUNDLE_TOO_LARGE: 500,
  BUNDLE_MARKED_BAD: 500,
  BUNDLE_SAMPLES_INVALID: 500,
  LOCAL_INTEGRITY_FAILED: 500,
  INCOMPATIBLE: 422,
  // download / transport
  DOWNLOAD_FAILED: 500,
  CHUNK_INVALID: 500,
  TIMEOUT: 504,
  NOT_CONNECTED: 503,
  // RFC 4918 §11.5: the server cannot store what the request needs; 503 for the other local faults.
  DISK_FULL: 507,
  STORAGE_READ_ONLY: 503,
  STORAGE_FAILED: 503,
  // runtime
  MODEL_LOAD_FAILED: 422,
  MODEL_NOT_READY: 503,
  INFERENCE_FAILED: 500,
  SMOKE_TEST_FAILED: 422,
  HOST_CRASHED: 500,
  INVALID_TENSOR: 400,
  // probation verdicts
  LATENCY_REGRESSION: 500,
  ERROR_RATE_EXCEEDED: 500,
  NON_FINITE_OUTPUT: 500,
  MEMORY_BUDGET_EXCEEDED: 500,
  // telemetry
  TELEMETRY_MALFORMED: 500,
  TELEMETRY_DEVICE_MISMATCH: 500,
  TELEMETRY_TOO_LARGE: 500,
  TELEMETRY_SEQ_BACKWARDS: 500,
  // Not the caller's fault and gone by retrying (a new upload): the server restarted under the build.
  BUILD_INTERRUPTED: 503,
  // governance: the request is fine, the version's state refuses it (approve it, or pick another).
  MODEL_VERSION_RETIRED: 409,
  APPROVAL_REQUIRED: 409,
  STAGE_TRANSITION_INVALID: 409,
  INTERNAL: 500,
  DELTA_INVALID: 500,
  DELTA_BASE_MISMATCH: 409,
  DELTA_RESULT_MISMATCH: 500,
  // Gone by retrying: a replica takes the rollouts lease within its TTL (seconds).
  NO_LEADER: 503,
  // the fleet server's PostgreSQL store is down or too slow: retry later (issue 14)
  STORE_UNAVAILABLE: 503,
  // sequences: the limit is back-pressure (retry later); the other two need a new sequence_start.
  SEQUENCE_LIMIT: 429,
  SEQUENCE_UNKNOWN: 409,
  SEQUENCE_LOST: 409,
};

export function httpStatusFor(code: ErrorCode): number {
  return STATUS[code];
}
