import { EdgeFleetError, type ErrorCode, type ErrorJson } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { INTEGRITY_CODES } from "../bundle/reverify.js";
import type { ModelRuntime } from "../runtime/model-runtime.js";
import type { Job } from "./pipeline-steps.js";
import { discardLocalCopies, keptBundleSha256 } from "./self-heal.js";
import type { PipelineStep } from "./verdicts.js";

/**
 * A candidate whose extracted files changed on the device between staging (extraction and
 * verification) and loading. The bundle is genuine — its download hashed to the signed SHA-256 — so
 * the local copy is re-made and the candidate goes on, instead of the bundle being marked bad for
 * ever. Used by the active pipeline (updater.ts) and by side candidates (side-candidates.ts). The
 * decisions are pure (`localDamage`, `decideCandidateRepair`); `createDamagedCandidates` does the
 * I/O between them. See docs/decisions.md "Damaged candidates".
 */

/**
 * Repairs of one candidate before giving up: damage that comes back after the files were re-made
 * from verified bytes is something on the device rewriting them, and another extraction would only
 * feed it. Each repair is at most one extraction (or one download when the kept bundle is damaged too).
 */
export const MAX_CANDIDATE_REPAIRS = 2;

/** Steps that re-verify the extracted files (the load, or the smoke test's load after a restart). */
const LOAD_STEPS: ReadonlySet<PipelineStep> = new Set<PipelineStep>(["loading", "smoke-testing"]);

/**
 * The integrity code behind a failure at `step`, or null for a genuine failure (the model does not
 * load, fails its smoke test, or any failure at another step: a bad signature or manifest at
 * verifying, an unsafe archive at staging). Pure.
 */
export function localDamage(step: PipelineStep, error: Pick<ErrorJson, "code">): ErrorCode | null {
  // The model host's own hash check of model.onnx (closing the window after the re-verification)
  // reports BUNDLE_HASH_MISMATCH as such (model-host.ts), so it is covered here too.
  return LOAD_STEPS.has(step) && INTEGRITY_CODES.has(error.code) ? error.code : null;
}

export type CandidateRepair =
  /** The kept bundle still hashes to the signed SHA-256: discard the extracted copy, extract again. */
  | { kind: "re-extract"; from: "staging" }
  /** The kept bundle is gone or damaged too: discard both, download again. */
  | { kind: "re-download"; from: "downloading" }
  /** Damaged again after MAX_CANDIDATE_REPAIRS repairs: fail, without marking the bundle bad. */
  | { kind: "give-up" };

/** After local damage (`localDamage` non-null), with `repairs` already made for this candidate. Pure. */
export function decideCandidateRepair(f: {
  repairs: number;
  /** SHA-256 of the kept `.bundle` file now; null when it is missing or unreadable. */
  keptBundleSha256: string | null;
  /** The assignment's signed SHA-256 of the bundle. */
  signedSha256: string;
}): CandidateRepair {
  if (f.repairs >= MAX_CANDIDATE_REPAIRS) return { kind: "give-up" };
  return f.keptBundleSha256 === f.signedSha256
    ? { kind: "re-extract", from: "staging" }
    : { kind: "re-download", from: "downloading" };
}

export type CandidateOutcome =
  /**
   * Run the steps again from `from` (the local copies are already gone). `damage` is carried by the
   * first transition of the re-run, so events and `reported` say why the candidate went back.
   */
  | { kind: "retry"; from: "staging" | "downloading"; repairs: number; damage: ErrorJson }
  /** Fail with `error`: the original one for a genuine failure (marked bad as before), else LOCAL_INTEGRITY_FAILED. */
  | { kind: "fail"; error: EdgeFleetError };

export interface DamagedCandidates {
  /**
   * The candidate `job` failed at `step` with `err`, after `repairs` local repairs. Decides, and on a
   * retry unloads the candidate and deletes the local copies the re-run must make again.
   */
  afterFailure(job: Job, step: PipelineStep, err: EdgeFleetError, repairs: number): Promise<CandidateOutcome>;
}

export function createDamagedCandidates(deps: {
  log: Logger;
  dirs: { downloads: string; models: string };
  runtime: Pick<ModelRuntime, "unload">;
}): DamagedCandidates {
  return {
    async afterFailure(job, step, err, repairs) {
      const damage = localDamage(step, err);
      if (!damage) return { kind: "fail", error: err };
      const { model, ref } = job;
      const name = `candidate ${model}@${ref.version}`;
      const kept = await keptBundleSha256(deps.dirs.downloads, ref.sha256);
      const d = decideCandidateRepair({ repairs, keptBundleSha256: kept, signedSha256: ref.sha256 });
      if (d.kind === "give-up") {
        deps.log.error(
          { model, sha256: ref.sha256, code: damage, repairs },
          "candidate damaged on disk again; giving up",
        );
        const message = `${name}: its files kept changing on the device after ${repairs} repairs (${err.message}); the bundle is not marked bad`;
        return {
          kind: "fail",
          error: new EdgeFleetError("LOCAL_INTEGRITY_FAILED", message, { details: { damage, repairs } }),
        };
      }
      if (job.loaded) await deps.runtime.unload(job.loaded).catch(() => undefined);
      job.loaded = null;
      const source = d.kind === "re-extract" ? "kept bundle" : "server";
      await discardLocalCopies(deps.dirs, model, ref.sha256, { bundle: d.kind === "re-download" });
      deps.log.warn(
        { model, sha256: ref.sha256, code: damage, step, repair: repairs + 1, source },
        d.kind === "re-extract"
          ? "candidate damaged on disk; re-extracting from the kept bundle"
          : "candidate damaged on disk; downloading the bundle again",
      );
      const localRepair = { attempt: repairs + 1, max: MAX_CANDIDATE_REPAIRS, step, from: d.from, source };
      const message = `${name} damaged on disk after staging, re-made from the ${source}: ${err.message}`;
      return {
        kind: "retry",
        from: d.from,
        repairs: repairs + 1,
        damage: { code: damage, message, details: { localRepair } },
      };
    },
  };
}
