import { EdgeFleetError } from "../../shared/errors.js";
import type { Manifest } from "../../shared/schemas/manifest.js";
import type { TensorSpec } from "../../shared/schemas/tensor.js";

/**
 * Pure decisions of the sequence store (issue 18, sequence-store.ts): whether a frame may run, which
 * sequences have expired, when to look again. No I/O, no clock reads: `now` is given.
 */

/** Agent defaults when the manifest's `sequence` does not set them (docs/protocol.md "Sequences"). */
export const DEFAULT_SEQUENCE_IDLE_MS = 60_000;
export const DEFAULT_MAX_SEQUENCES = 64;

export interface SequenceLimits {
  idleMs: number;
  maxLive: number;
}

/** The manifest's limits over the agent's defaults. */
export function limitsFor(manifest: Manifest, defaults: SequenceLimits): SequenceLimits {
  const s = manifest.sequence;
  return {
    idleMs: s?.idleTimeoutSeconds !== undefined ? s.idleTimeoutSeconds * 1000 : defaults.idleMs,
    maxLive: s?.maxSequences ?? defaults.maxLive,
  };
}

/** What the store knows of one live sequence. */
export interface SequenceEntry {
  id: string;
  model: string;
  /** Host process the state lives in (when it changes, the state is gone). */
  pid: number;
  lastUsed: number;
  /** Frames of it running now: a busy sequence never expires under its own frame. */
  busy: number;
  /** Set when its host died: later frames get SEQUENCE_LOST until a restart or expiry. */
  lost: string | null;
}

export type StepPlan =
  | { kind: "start"; replaces: boolean }
  | { kind: "continue" }
  | { kind: "refuse"; error: EdgeFleetError; forget: boolean };

/**
 * A frame's fate. A start of a live id restarts it (Triton does the same), and is not counted against
 * the limit since it frees its own slot. `live`: sequences of the model now, this one included if live.
 */
export function planStep(
  entry: SequenceEntry | undefined,
  step: { id: string; model: string; start: boolean },
  live: number,
  limits: SequenceLimits,
  currentPid: number | null,
): StepPlan {
  if (step.start) {
    if (entry) return { kind: "start", replaces: true };
    if (live >= limits.maxLive) {
      return {
        kind: "refuse",
        forget: false,
        error: new EdgeFleetError(
          "SEQUENCE_LIMIT",
          `model ${step.model} already has ${live} live sequences (limit ${limits.maxLive}); end one or wait for one to expire`,
          { details: { model: step.model, live, limit: limits.maxLive } },
        ),
      };
    }
    return { kind: "start", replaces: false };
  }
  if (!entry) {
    return {
      kind: "refuse",
      forget: false,
      error: new EdgeFleetError(
        "SEQUENCE_UNKNOWN",
        `sequence ${step.id} of ${step.model} was never started, has ended or expired; send sequence_start`,
      ),
    };
  }
  const lost = entry.lost ?? (currentPid !== entry.pid ? "its model host was restarted" : null);
  if (lost) {
    return {
      kind: "refuse",
      forget: false,
      error: new EdgeFleetError("SEQUENCE_LOST", `sequence ${step.id} of ${step.model} lost its state: ${lost}`),
    };
  }
  return { kind: "continue" };
}

/** Sequences idle for at least their model's `idleMs` (busy ones never). */
export function expiredSequences(
  entries: Iterable<SequenceEntry>,
  now: number,
  idleMsOf: (model: string) => number,
): SequenceEntry[] {
  const out: SequenceEntry[] = [];
  for (const e of entries) if (e.busy === 0 && now - e.lastUsed >= idleMsOf(e.model)) out.push(e);
  return out;
}

/** When the next idle sequence would expire, or null when none can (none, or all busy). */
export function nextExpiry(entries: Iterable<SequenceEntry>, idleMsOf: (model: string) => number): number | null {
  let next: number | null = null;
  for (const e of entries) {
    if (e.busy > 0) continue;
    const at = e.lastUsed + idleMsOf(e.model);
    if (next === null || at < next) next = at;
  }
  return next;
}

/** The inputs an app sends for a frame: the manifest's, without the implicit state and constants. */
export function appInputSpecs(manifest: Manifest): TensorSpec[] {
  const s = manifest.sequence;
  if (!s) return manifest.inputs;
  const implicit = new Set([...s.state.map((x) => x.input), ...s.constants.map((c) => c.input)]);
  // A window's input is sent as k new steps along its axis: that dim is free in the request.
  const axes = new Map(s.windows.map((w) => [w.input, w.axis]));
  return manifest.inputs
    .filter((i) => !implicit.has(i.name))
    .map((i) => {
      const axis = axes.get(i.name);
      return axis === undefined ? i : { ...i, shape: i.shape.map((d, k) => (k === axis ? -1 : d)) };
    });
}
