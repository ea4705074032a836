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
  | { type: "run"; outputs: Record<string, RawTensor>; computeMs: number }
  | { type: "rss"; rss: number }
  | { type: "stop" };

export type HostResponse = { id: number; ok: true; result: HostResult } | { id: number; ok: false; error: ErrorJson };
