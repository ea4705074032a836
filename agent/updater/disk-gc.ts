import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../shared/logger.js";
import type { ModelRuntime } from "../runtime/model-runtime.js";
import type { AgentStore } from "../store/agent-store.js";
import type { SideCandidates } from "./side-candidates.js";

/**
 * Disk garbage collection on the device. Every update leaves a downloaded bundle
 * (`downloads/{sha}.bundle`) and an extracted version (`models/{model}/{sha}/`); nothing removed
 * them, so a device's disk use grew with every release (found while building self-repair). The
 * pure plan keeps exactly what a device may still need and removes the rest:
 *  - every bundle a model record names (committed, candidate) or a side candidate (shadow/A-B) runs,
 *  - every bundle a running model host was loaded from (a crashed host restarts from its files),
 *  - every bundle the accepted desired state assigns and that is not marked bad (an install about
 *    to start, or a resumable `.part` download), so a download is never thrown away and refetched.
 * Staging entries are half-finished extractions; the plan removes them only when no extraction
 * can be running (the executor runs on the updater's one-job-at-a-time queue, between jobs).
 */

export interface DiskInventory {
  /** `models/{model}/{sha256}` directories. */
  modelDirs: { model: string; sha256: string }[];
  /** File names in `downloads/` (`{sha}.bundle`, `{sha}.part`, anything else). */
  downloads: string[];
  /** Entry names in `staging/`. */
  staging: string[];
}

export interface DiskGcPlan {
  modelDirs: { model: string; sha256: string }[];
  downloads: { name: string; sha256: string | null }[];
  staging: string[];
}

const DOWNLOAD_NAME = /^([0-9a-f]{64})\.(bundle|part)$/;

/** What to delete, given what is on disk and the bundles to keep. Pure. */
export function planDiskGc(inv: DiskInventory, keep: ReadonlySet<string>): DiskGcPlan {
  return {
    modelDirs: inv.modelDirs.filter((d) => !keep.has(d.sha256)),
    downloads: inv.downloads.flatMap((name): DiskGcPlan["downloads"] => {
      const m = DOWNLOAD_NAME.exec(name);
      if (!m) return [{ name, sha256: null }]; // not ours (or a torn temp file): nothing reads it
      const sha = m[1] as string;
      return keep.has(sha) ? [] : [{ name, sha256: sha }];
    }),
    staging: [...inv.staging],
  };
}

/** The bundles to keep (see the file comment). Pure. */
export function bundlesToKeep(s: {
  records: { committed: { sha256: string } | null; candidate: { sha256: string } | null }[];
  sides: string[];
  loaded: string[];
  assigned: string[];
  bad: ReadonlySet<string>;
}): Set<string> {
  const keep = new Set<string>([...s.sides, ...s.loaded]);
  for (const r of s.records) {
    if (r.committed) keep.add(r.committed.sha256);
    if (r.candidate) keep.add(r.candidate.sha256);
  }
  for (const sha of s.assigned) if (!s.bad.has(sha)) keep.add(sha);
  return keep;
}

export interface DiskGcDeps {
  log: Logger;
  dirs: { downloads: string; models: string; staging: string };
  /** Forget a removed `.part` file's resume point, so a later download starts from zero. */
  clearDownload(sha256: string): void;
}

const list = async (dir: string): Promise<string[]> => readdir(dir).catch(() => []);

async function inventory(dirs: DiskGcDeps["dirs"]): Promise<DiskInventory> {
  const modelDirs: DiskInventory["modelDirs"] = [];
  for (const model of await list(dirs.models)) {
    for (const sha256 of await list(join(dirs.models, model))) modelDirs.push({ model, sha256 });
  }
  return { modelDirs, downloads: await list(dirs.downloads), staging: await list(dirs.staging) };
}

async function sizeOf(path: string): Promise<number> {
  const s = await stat(path).catch(() => null);
  if (!s) return 0;
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const e of await list(path)) total += await sizeOf(join(path, e));
  return total;
}

/**
 * Removes what `planDiskGc` says. Must run when no pipeline step is running (the updater's queue).
 * Failures are logged and skipped: a file that cannot be removed now is tried again next time.
 */
export async function collectGarbage(
  deps: DiskGcDeps,
  keep: ReadonlySet<string>,
): Promise<{ removed: number; bytes: number }> {
  const plan = planDiskGc(await inventory(deps.dirs), keep);
  const paths = [
    ...plan.modelDirs.map((d) => join(deps.dirs.models, d.model, d.sha256)),
    ...plan.downloads.map((d) => join(deps.dirs.downloads, d.name)),
    ...plan.staging.map((s) => join(deps.dirs.staging, s)),
  ];
  let bytes = 0;
  let removed = 0;
  for (const path of paths) {
    const size = await sizeOf(path);
    try {
      await rm(path, { recursive: true, force: true });
      bytes += size;
      removed++;
    } catch (err) {
      deps.log.warn({ err, path }, "could not remove an unused file");
    }
  }
  for (const d of plan.downloads) if (d.sha256 && d.name.endsWith(".part")) deps.clearDownload(d.sha256);
  // Empty model folders (every version removed) go too.
  for (const model of new Set(plan.modelDirs.map((d) => d.model))) {
    if ((await list(join(deps.dirs.models, model))).length === 0) {
      await rm(join(deps.dirs.models, model), { recursive: true, force: true }).catch(() => undefined);
    }
  }
  if (removed > 0) deps.log.info({ removed, bytes, paths }, "removed files no model needs any more");
  return { removed, bytes };
}

/** The updater's hook: after each reconcile, keep what the device's records, hosts and desired state need. */
export function createDiskGc(deps: {
  log: Logger;
  dirs: DiskGcDeps["dirs"];
  store: Pick<AgentStore, "models" | "badBundles" | "clearDownload">;
  runtime: Pick<ModelRuntime, "loaded">;
  sides: Pick<SideCandidates, "bundles">;
}): { run(assigned: string[]): Promise<{ removed: number; bytes: number }> } {
  const { store } = deps;
  return {
    run: (assigned) =>
      collectGarbage(
        { log: deps.log, dirs: deps.dirs, clearDownload: (sha) => store.clearDownload(sha) },
        bundlesToKeep({
          records: store.models(),
          sides: deps.sides.bundles(),
          loaded: deps.runtime.loaded().map((l) => l.installed.sha256),
          assigned,
          bad: store.badBundles(),
        }),
      ),
  };
}
