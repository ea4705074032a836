import type { ErrorJson } from "../../shared/errors.js";
import type { SequenceSpec } from "../../shared/schemas/sequence.js";
import type { RawTensor } from "../../shared/tensors.js";
import type { HostSessionOptions } from "./session-options.js";

/**
 * Agent (parent) ↔ model host (child), two channels (architecture.md §11 "Agent ↔ host data path", issue 13):
 *
 * - control: the fork IPC channel (`serialization: "advanced"`) carries `load`, `rss` and `stop` and
 *   their answers — small objects, never tensors;
 * - bulk: `run` requests and replies as length-prefixed binary frames (host-frames.ts) over the child's
 *   stdin (agent → host) and fd 4 (host → agent). Node creates both as Unix socketpairs inherited at
 *   fork: private to the two processes by construction (no path anyone else could open), and closed by
 *   the kernel when either side dies.
 *
 * Frame headers: host-headers.ts. Every request carries an `id`, unique across both channels; the host answers each exactly once with
 * the same `id` on the channel it came from, and handles requests one at a time in arrival order.
 */
export type HostRequest =
  /**
   * `modelSha256`: when set, the host reads the file once, checks its hash and builds the session
   * from those very bytes, so nothing can swap the file between verification and use (issue 7).
   */
  | {
      id: number;
      type: "load";
      modelPath: string;
      modelSha256?: string;
      options: HostSessionOptions;
      /** The manifest's implicit state: the host keeps live sequences' state (host-sequences.ts, issue 18). */
      sequence?: SequenceSpec;
    }
  | { id: number; type: "rss" }
  /** Forgets these sequences' state (expired, or restarted elsewhere); unknown ids are ignored. */
  | { id: number; type: "sequence-drop"; ids: string[] }
  /** A compatible swap moves sequences (issue 18): their state out of the old host, into the new one. */
  | { id: number; type: "sequence-export"; ids: string[] }
  | { id: number; type: "sequence-import"; states: SequenceStates }
  | { id: number; type: "stop" };

/** Live sequences' state tensors by sequence id, then by input name (structured-cloned over IPC). */
export type SequenceStates = Record<string, Record<string, RawTensor>>;

export interface ValueInfo {
  name: string;
  /** ORT element type, or null for non-tensor values (sequences, maps). */
  type: RawTensor["type"] | null;
  /** Numbers for fixed dims; strings (possibly empty) for symbolic ones. */
  shape: (number | string)[];
}

export interface HostMetadata {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export type HostResult =
  | { type: "load"; metadata: HostMetadata }
  | { type: "rss"; rss: number }
  | { type: "sequence-drop"; dropped: number }
  | { type: "sequence-export"; states: SequenceStates }
  | { type: "sequence-import"; imported: number }
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
