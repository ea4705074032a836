import type { ErrorCode } from "./errors.js";

/** The single mapping from error codes to HTTP status, used by the fleet server API and the agent socket. */
const STATUS: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  INVALID_TENSOR: 400,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  RANGE_NOT_SATISFIABLE: 416,
  MODEL_NOT_READY: 503,
  NOT_CONNECTED: 503,
  TIMEOUT: 504,
  // RFC 4918 §11.5: the server cannot store what the request needs; 503 for the other local faults.
  DISK_FULL: 507,
  STORAGE_READ_ONLY: 503,
  STORAGE_FAILED: 503,
  INCOMPATIBLE: 422,
  MODEL_LOAD_FAILED: 422,
  SMOKE_TEST_FAILED: 422,
  // Only the fleet server's signature upload raises these over HTTP (offline release signing).
  SIGNATURE_THRESHOLD_NOT_MET: 422,
  MANIFEST_MISMATCH: 422,
  RELEASE_NOT_SIGNED: 409,
  // Not the caller's fault and gone by retrying (a new upload): the server restarted under the build.
  BUILD_INTERRUPTED: 503,
};

export function httpStatusFor(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}
