import type { ErrorJson } from "../../shared/errors.js";
import type { OrtTensorType, RawTensor } from "../../shared/tensors.js";
import type { HostSessionOptions } from "./session-options.js";

/**
 * Messages between the agent (parent) and a model host (child) over the fork IPC channel with
 * `serialization: "advanced"` (structured clone), so typed arrays and bigint arrays cross without JSON.
 * Every request carries an `id`; the host answers each exactly once with the same `id`.
 */
export type HostRequest =
  /**
   * `modelSha256`: when set, the host reads the file once, checks its hash and builds the session
   * from those very bytes, so nothing can swap the file between verification and use (issue 7).
   */
  | { id: number; type: "load"; modelPath: string; modelSha256?: string; options: HostSessionOptions }
  | { id: number; type: "run"; feeds: Record<string, RawTensor>; outputs?: string[] }
  | { id: number; type: "rss" }
  | { id: number; type: "stop" };

export interface ValueInfo {
  name: string;
  /** ORT element type, or null for non-tensor values (sequences, maps). */
  type: OrtTensorType | null;
  /** Numbers for fixed dims; strings (possibly empty) for symbolic ones. */
  shape: (number | string)[];
}

export interface HostMetadata {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export type HostResult =
  | { type: "load"; metadata: HostMetadata }
  /** `computeMs`: time inside `session.run` in the host, excluding IPC and queueing (the model's own latency). */
  | { type: "run"; outputs: Record<string, RawTensor>; computeMs: number; timing: HostRunTiming }
  | { type: "rss"; rss: number }
  | { type: "stop" };

export type HostResponse = { id: number; ok: true; result: HostResult } | { id: number; ok: false; error: ErrorJson };

/**
 * Monotonic milliseconds on the machine-wide clock (`process.hrtime`, CLOCK_MONOTONIC): the same clock in
 * the agent and every host, so timestamps taken in different processes can be subtracted. Stage
 * breakdowns of the benchmarks (docs/benchmarks.md, issue 13) are built from these.
 */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Where the host spent a run (monoMs): request decoded, `session.run` start and end, reply about to be sent. */
export interface HostRunTiming {
  received: number;
  ortStart: number;
  ortEnd: number;
  replying: number;
}

/** A run as the agent saw it: the host's timing plus when the agent sent the request and got the reply. */
export interface RunTiming extends HostRunTiming {
  sent: number;
  answered: number;
}
