import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, type ErrorCode, type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import { sha256File } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import type { InstalledRef, UpdateState } from "../../shared/schemas/device-state.js";
import { INTEGRITY_CODES } from "../bundle/reverify.js";
import type { ModelRuntime } from "../runtime/model-runtime.js";
import type { AgentStore, ModelRecord } from "../store/agent-store.js";
import { isStorageCode } from "../store/storage-faults.js";
import { DEFAULT_BACKOFF, fullJitterDelay } from "../transport/backoff.js";
import type { AcceptedDesired } from "./assignment-jobs.js";
import { bundleFilePath } from "./downloader.js";
import type { Job } from "./pipeline-steps.js";
import { IN_PROGRESS_STATES } from "./plan-update.js";
import { type PipelineStep, planResume } from "./verdicts.js";

/**
 * Self-repair of a committed model whose extracted files were found damaged (tampered, deleted,
 * corrupted) when re-verified before a load. The bundle itself is genuine — it was verified and
 * committed — so the agent throws its local copies away and acquires the same bundle (same
 * SHA-256) again through the normal download, extraction, load and smoke test, then commits it
 * again. It never marks the bundle bad. Decisions are pure (`decideRepair`, `decideAfterFailure`);
 * `createSelfHeal` does the I/O between them. See docs/decisions.md "Self-repair".
 */

/** Steps of a repair: the update pipeline without probation (the bundle passed it when committed). */
export const REPAIR_STEPS = ["downloading", "staging", "loading", "smoke-testing", "swapping"] as const;
export type RepairStep = (typeof REPAIR_STEPS)[number];

/** The transfer failed, not the bytes: the server or the link is away. Retried for as long as it lasts. */
const TRANSPORT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "DOWNLOAD_FAILED",
  "NOT_CONNECTED",
  "TIMEOUT",
  "CHUNK_INVALID",
]);
/**
 * Attempts after which damage that keeps coming back (bytes served that do not hash to the signed
 * SHA-256, or files changed again between extraction and load) stops being retried: each attempt
 * costs a whole download, and something on the device or the path is persistently wrong.
 */
export const MAX_DAMAGED_ATTEMPTS = 5;

/**
 * SHA-256 of the kept download `{downloads}/{sha256}.bundle`, or null when it is gone or unreadable.
 * The downloader trusts a complete `.bundle` without hashing it again, so after local damage the kept
 * copy is hashed here against the signed sha256: intact, it is re-extracted with no server at all (an
 * offline device heals); damaged, it goes and the bundle is fetched again.
 */
export async function keptBundleSha256(downloads: string, sha256: string): Promise<string | null> {
  return sha256File(bundleFilePath(downloads, sha256)).then(
    (h) => h.sha256,
    () => null,
  );
}

/**
 * Deletes the extracted copy of a bundle (the staging step skips a directory that exists) and, with
 * `bundle`, the kept download too. A `.part` stays: the downloader hashes the whole file at its end.
 */
export async function discardLocalCopies(
  dirs: { downloads: string; models: string },
  model: string,
  sha256: string,
  opts: { bundle: boolean },
): Promise<void> {
  await rm(join(dirs.models, model, sha256), { recursive: true, force: true });
  if (opts.bundle) await rm(bundleFilePath(dirs.downloads, sha256), { force: true });
}

export type RepairCause =
  /** The committed version failed to load (start-up, or the reload of a revert). */
  | { kind: "load-failed"; code: ErrorCode }
  /** A backoff timer of an earlier attempt fired. */
  | { kind: "retry"; sha256: string };

export type RepairDecision =
  | { kind: "repair"; ref: InstalledRef }
  /** Damaged, but the accepted desired state does not assign this bundle: report `failed`; reconciliation decides. */
  | { kind: "report" }
  /** Not damage, or an update (or repair) under way decides, or the record moved on. */
  | { kind: "none" };

export interface RepairFacts {
  record: Pick<ModelRecord, "state" | "committed" | "candidate">;
  cause: RepairCause;
  /** SHA-256 the accepted desired state assigns to the model as its active version, if any. */
  activeSha: string | null;
  /** Whether the committed bundle is on the device's bad list. */
  bad: boolean;
}

/** A record whose candidate is its own committed bundle is a repair (a normal install never is one). */
export function isRepair(rec: Pick<ModelRecord, "committed" | "candidate">): boolean {
  return rec.committed !== null && rec.candidate?.sha256 === rec.committed.sha256;
}

/** Whether to re-acquire the committed bundle. Pure. */
export function decideRepair(f: RepairFacts): RepairDecision {
  const { committed, candidate, state } = f.record;
  if (!committed) return { kind: "none" };
  const wanted = f.activeSha === committed.sha256 && !f.bad;
  if (f.cause.kind === "retry") {
    // Only while the record still waits for this repair: a newer update replaces it.
    const waiting = state === "failed" && candidate?.sha256 === f.cause.sha256 && committed.sha256 === f.cause.sha256;
    return waiting && wanted ? { kind: "repair", ref: committed } : { kind: "none" };
  }
  if (!INTEGRITY_CODES.has(f.cause.code)) return { kind: "none" };
  // An interrupted update resumes and decides (its own failure keeps the model unserved, as before).
  if (IN_PROGRESS_STATES.has(state)) return { kind: "none" };
  return wanted ? { kind: "repair", ref: committed } : { kind: "report" };
}

export type RetryDecision = { kind: "retry"; delayMs: number } | { kind: "give-up" };

/**
 * After a failed repair attempt (`attempt` counts from 0). Pure. Transport failures are retried with
 * the agent's full-jitter backoff for as long as they last; integrity failures (bytes served that do
 * not hash to the signed SHA-256, files changed again before loading) up to MAX_DAMAGED_ATTEMPTS;
 * anything else — the same bytes failing to load or their smoke test — would fail the same way
 * again, so the repair stops there.
 */
export function decideAfterFailure(f: { code: ErrorCode; attempt: number }, random: () => number): RetryDecision {
  const retry = (): RetryDecision => ({ kind: "retry", delayMs: fullJitterDelay(f.attempt, random, DEFAULT_BACKOFF) });
  // A full or read-only disk (issue 20 §2) lasts until someone frees it: retried like the transport.
  if (TRANSPORT_CODES.has(f.code) || isStorageCode(f.code)) return retry();
  // Hash and size mismatches of the download are in INTEGRITY_CODES too.
  return INTEGRITY_CODES.has(f.code) && f.attempt + 1 < MAX_DAMAGED_ATTEMPTS ? retry() : { kind: "give-up" };
}

/** Where an interrupted repair resumes after a restart. Pure. */
export function repairResumeStep(state: UpdateState): RepairStep | null {
  const action = planResume(state, 0, 0);
  if (action.kind === "none") return null;
  if (action.kind === "revert" || action.from === "probation") return "downloading"; // never persisted by a repair
  return action.from;
}

export interface SelfHealDeps {
  log: Logger;
  clock: Clock;
  store: Pick<AgentStore, "model" | "badBundles">;
  runtime: Pick<ModelRuntime, "activate" | "unload" | "isLoaded" | "serving">;
  dirs: { downloads: string; models: string };
  steps: Record<PipelineStep, (job: Job) => Promise<void>>;
  jobFor(model: string, sha256: string): Job | null;
  accepted(): AcceptedDesired | null;
  transition(model: string, to: UpdateState, patch?: Partial<ModelRecord>, error?: ErrorJson): void;
  enqueue(name: string, work: () => Promise<void>): void;
  /** Fault injection before a step (the updater's `pauseBeforeStep`). */
  hold(step: PipelineStep): Promise<void>;
  isClosed(): boolean;
  random?: () => number;
}

export interface SelfHeal {
  /**
   * The committed version of `rec` failed to load with `err`. Queues a repair when one is decided
   * (after the work already queued); with `report`, damage that is not repaired is reported `failed`.
   */
  onLoadFailure(rec: ModelRecord, err: EdgeFleetError, opts: { report: boolean }): RepairDecision["kind"];
  /** Resumes a repair interrupted by a restart (`isRepair(rec)`); false when there is nothing to resume. */
  resume(rec: ModelRecord): boolean;
  close(): void;
}

interface Pending {
  ref: InstalledRef;
  /** What was found on disk; carried in every transition of the repair so `reported` says why. */
  damage: ErrorJson;
  attempt: number;
  timer: { cancel(): void } | null;
}

export function createSelfHeal(deps: SelfHealDeps): SelfHeal {
  const { log, store, runtime } = deps;
  const random = deps.random ?? Math.random;
  const pending = new Map<string, Pending>();
  const activeSha = (model: string) =>
    deps.accepted()?.desired.assignments.find((a) => a.model === model && a.strategy.mode === "active")?.bundle
      .sha256 ?? null;

  const decide = (model: string, cause: RepairCause) => {
    const record = store.model(model);
    if (!record) return { kind: "none" } as const;
    const bad = record.committed ? store.badBundles().has(record.committed.sha256) : false;
    return decideRepair({ record, cause, activeSha: activeSha(model), bad });
  };

  const schedule = (model: string, p: Pending, from: RepairStep) => {
    pending.set(model, p);
    deps.enqueue(`repair ${model}`, () => attempt(model, p, from));
  };

  /** One attempt: discard the local copies (from the start), then the pipeline steps up to the switch. */
  const attempt = async (model: string, p: Pending, from: RepairStep) => {
    if (deps.isClosed()) return;
    const rec = store.model(model);
    const ours = rec?.committed?.sha256 === p.ref.sha256;
    const job = ours && activeSha(model) === p.ref.sha256 ? deps.jobFor(model, p.ref.sha256) : null;
    if (!job) {
      // A newer desired state no longer assigns the bundle: its reconciliation decides. The damage is
      // still reported, and an interrupted repair must not stay "in progress" for ever.
      pending.delete(model);
      const open = rec?.state === "committed" || (rec !== null && isRepair(rec) && IN_PROGRESS_STATES.has(rec.state));
      if (ours && open) deps.transition(model, "failed", {}, p.damage);
      return;
    }
    const errorOf = (extra: Record<string, unknown> = {}): ErrorJson => ({
      ...p.damage,
      details: { repair: { sha256: p.ref.sha256, version: p.ref.version, attempt: p.attempt + 1, ...extra } },
    });
    // After a restart mid-repair, the start-up load may already have re-verified and activated the
    // re-extracted files: then only the commit is left.
    const serving = from !== "downloading" && runtime.serving().get(model)?.installed.sha256 === p.ref.sha256;
    let step: RepairStep = from;
    try {
      if (from === "downloading") {
        deps.transition(model, "verifying", { candidate: p.ref }, errorOf());
        const intact = (await keptBundleSha256(deps.dirs.downloads, p.ref.sha256)) === p.ref.sha256;
        await discardLocalCopies(deps.dirs, model, p.ref.sha256, { bundle: !intact });
        log.info({ model, sha256: p.ref.sha256, source: intact ? "local bundle" : "server" }, "repairing from");
      }
      for (step of serving ? [] : REPAIR_STEPS.slice(REPAIR_STEPS.indexOf(from))) {
        deps.transition(model, step, { candidate: p.ref }, errorOf());
        await deps.hold(step);
        if (deps.isClosed()) return; // the persisted step resumes on the next start
        if (step !== "swapping") await deps.steps[step](job);
        else if (job.loaded) await runtime.activate(job.loaded);
        else throw new EdgeFleetError("INTERNAL", "repair switch without a loaded version");
      }
    } catch (err) {
      if (deps.isClosed()) return;
      if (job.loaded && runtime.isLoaded(job.loaded)) await runtime.unload(job.loaded).catch(() => undefined);
      const e = toEdgeFleetError(err);
      const next = decideAfterFailure({ code: e.code, attempt: p.attempt }, random);
      const failure = { code: e.code, message: `repair of ${describe(model, p.ref)} failed at ${step}: ${e.message}` };
      if (next.kind === "give-up") {
        pending.delete(model);
        log.error({ model, code: e.code, step, damage: p.damage.code }, "committed model repair gave up");
        deps.transition(model, "failed", { candidate: p.ref }, { ...failure, details: errorOf().details });
        return;
      }
      log.warn({ model, code: e.code, step, retryInMs: next.delayMs }, "committed model repair failed; retrying");
      const retrying = { ...errorOf({ damage: p.damage.code, retryInMs: next.delayMs }), ...failure };
      deps.transition(model, "failed", { candidate: p.ref }, retrying);
      p.attempt++;
      p.timer = deps.clock.setTimeout(() => {
        p.timer = null;
        if (decide(model, { kind: "retry", sha256: p.ref.sha256 }).kind === "repair") schedule(model, p, "downloading");
        else pending.delete(model);
      }, next.delayMs);
      return;
    }
    pending.delete(model);
    log.info(
      { model, version: p.ref.version, sha256: p.ref.sha256, attempts: p.attempt + 1 },
      "committed model repaired",
    );
    deps.transition(model, "committed", { committed: p.ref, candidate: null, probationRestarts: 0 });
  };

  return {
    onLoadFailure(rec, err, opts) {
      const d = decide(rec.model, { kind: "load-failed", code: err.code });
      if (d.kind === "report" && opts.report) {
        // Not served, and reported rather than only logged (issue 7); a new release decides.
        deps.transition(
          rec.model,
          "failed",
          {},
          { code: err.code, message: `${describe(rec.model, rec.committed!)}: ${err.message}` },
        );
      }
      if (d.kind !== "repair") return d.kind;
      const where = describe(rec.model, d.ref);
      log.warn(
        { model: rec.model, code: err.code, sha256: d.ref.sha256 },
        "committed model damaged on disk; re-acquiring",
      );
      pending.get(rec.model)?.timer?.cancel();
      const damage = { code: err.code, message: `${where} damaged on disk, re-acquiring the bundle: ${err.message}` };
      schedule(rec.model, { ref: d.ref, damage, attempt: 0, timer: null }, "downloading");
      return d.kind;
    },
    resume(rec) {
      const from = repairResumeStep(rec.state);
      if (!rec.committed || !from) return false;
      const damage = rec.error ?? {
        code: "BUNDLE_MISSING_FILE" as const,
        message: `${describe(rec.model, rec.committed)} being re-acquired`,
      };
      log.info({ model: rec.model, from }, "resuming the repair of the committed model");
      schedule(rec.model, { ref: rec.committed, damage, attempt: 0, timer: null }, from);
      return true;
    },
    close() {
      for (const p of pending.values()) p.timer?.cancel();
      pending.clear();
    },
  };
}

function describe(model: string, ref: InstalledRef): string {
  return `committed ${model}@${ref.version}`;
}
