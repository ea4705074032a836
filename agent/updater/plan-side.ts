import type { ErrorJson } from "../../shared/errors.js";
import type { Assignment, DesiredState } from "../../shared/schemas/desired-state.js";
import type { InstalledRef, UpdateState } from "../../shared/schemas/device-state.js";
import { type ServingConfig, ServingConfigSchema } from "../serving/serving-config.js";
import { isStorageCode } from "../store/storage-faults.js";

/** The strategy of a side assignment (issue 4/8): a candidate beside the model's active version. */
export type SideMode =
  | { mode: "shadow"; sampleRate: number }
  | { mode: "ab"; weight: number; bandit?: { minShare: number } };

/**
 * A side candidate as the agent persists it (one per model). `state` follows the update state
 * machine's names: the pipeline steps while it is installed, `committed` once it is loaded,
 * smoke-tested and attached to the serving layer (it never serves as the model's active version),
 * `failed` when a step failed.
 */
export interface SideRecord {
  model: string;
  strategy: SideMode;
  ref: InstalledRef;
  state: UpdateState;
  error: ErrorJson | null;
  rolloutId: string | null;
  /** When the side started running (epoch ms): its health window starts here. */
  since: number;
}

/** What the planner needs to know of a side: its record and whether its host runs in this process. */
export interface SideCurrent {
  record: SideRecord;
  loaded: boolean;
}

export type SideAction =
  | { kind: "install-side"; model: string; assignment: Assignment; strategy: SideMode }
  | { kind: "set-strategy"; model: string; strategy: SideMode }
  /** `promoted`: the side's bundle is now the model's active assignment (the swap path takes it over). */
  | { kind: "remove-side"; model: string; sha256: string; promoted: boolean }
  | { kind: "noop"; model: string; reason: "already-running" | "already-failed" | "no-active-version" | "is-active" };

/** Per model, the active assignment and the side (shadow/ab) assignment of a desired state. Pure. */
export function splitAssignments(
  desired: Pick<DesiredState, "assignments">,
): Map<string, { active: Assignment | null; side: Assignment | null }> {
  const out = new Map<string, { active: Assignment | null; side: Assignment | null }>();
  for (const a of desired.assignments) {
    const slot = out.get(a.model) ?? { active: null, side: null };
    // One of each per model: the first wins (the server never publishes more, architecture.md §3).
    if (a.strategy.mode === "active") slot.active ??= a;
    else slot.side ??= a;
    out.set(a.model, slot);
  }
  return out;
}

/** The assignments the normal (swap) pipeline handles: the active ones. Pure. */
export function activeAssignments(desired: DesiredState): DesiredState {
  return { ...desired, assignments: desired.assignments.filter((a) => a.strategy.mode === "active") };
}

export function sideModeOf(a: Assignment): SideMode | null {
  if (a.strategy.mode === "shadow") return { mode: "shadow", sampleRate: a.strategy.sampleRate };
  if (a.strategy.mode === "ab")
    return { mode: "ab", weight: a.strategy.weight, ...(a.strategy.bandit ? { bandit: a.strategy.bandit } : {}) };
  return null;
}

const sameMode = (a: SideMode, b: SideMode) =>
  a.mode === b.mode &&
  (a.mode === "shadow"
    ? a.sampleRate === (b as typeof a).sampleRate
    : a.weight === (b as typeof a).weight && a.bandit?.minShare === (b as typeof a).bandit?.minShare);

/**
 * Decides what happens to side candidates (architecture.md §5, issue 4 `shadow`/`ab`). Pure. Removals come
 * first so a model never holds two side hosts at once. `committedSha` is the model's committed
 * version after the active pipeline ran: a side needs a serving version to run beside (control),
 * and a side whose bundle is the committed one has nothing left to do.
 */
export function planSides(
  current: readonly SideCurrent[],
  desired: Pick<DesiredState, "assignments">,
  committedSha: (model: string) => string | null,
): SideAction[] {
  const split = splitAssignments(desired);
  const byModel = new Map(current.map((c) => [c.record.model, c]));
  const removals: SideAction[] = [];
  const rest: SideAction[] = [];
  for (const cur of current) {
    const { model, ref } = cur.record;
    const slot = split.get(model);
    const wanted = slot?.side?.bundle.sha256 ?? null;
    if (wanted === ref.sha256) continue;
    removals.push({
      kind: "remove-side",
      model,
      sha256: ref.sha256,
      promoted: slot?.active?.bundle.sha256 === ref.sha256,
    });
  }
  for (const [model, { side }] of split) {
    if (!side) continue;
    const strategy = sideModeOf(side);
    if (!strategy) continue;
    const sha = side.bundle.sha256;
    const committed = committedSha(model);
    if (committed === sha) {
      rest.push({ kind: "noop", model, reason: "is-active" });
      continue;
    }
    if (committed === null) {
      rest.push({ kind: "noop", model, reason: "no-active-version" });
      continue;
    }
    const cur = byModel.get(model);
    if (cur && cur.record.ref.sha256 === sha) {
      // A side stopped by the device's disk (issue 20 §2) is installed again; any other failure stands.
      if (cur.record.state === "failed" && !isStorageCode(cur.record.error?.code)) {
        rest.push({ kind: "noop", model, reason: "already-failed" });
      } else if (cur.record.state === "failed") rest.push({ kind: "install-side", model, assignment: side, strategy });
      else if (cur.record.state !== "committed" || !cur.loaded) {
        rest.push({ kind: "install-side", model, assignment: side, strategy });
      } else if (!sameMode(cur.record.strategy, strategy)) rest.push({ kind: "set-strategy", model, strategy });
      else rest.push({ kind: "noop", model, reason: "already-running" });
      continue;
    }
    rest.push({ kind: "install-side", model, assignment: side, strategy });
  }
  return [...removals, ...rest];
}

/**
 * The serving options (batching, cache) for each assigned model: the active assignment's, else
 * the side's; `null` clears them. The serving layer configures per model, so both versions share
 * them. Pure; invalid options are the server's bug and are dropped (reported by the caller).
 */
export function servingConfigs(desired: Pick<DesiredState, "assignments">): Map<string, ServingConfig | null> {
  const out = new Map<string, ServingConfig | null>();
  for (const [model, { active, side }] of splitAssignments(desired)) {
    const raw = active?.serving ?? side?.serving;
    const parsed = raw ? ServingConfigSchema.safeParse(raw) : null;
    out.set(model, parsed?.success ? parsed.data : null);
  }
  return out;
}
