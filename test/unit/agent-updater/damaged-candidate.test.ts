import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LoadedVersion } from "../../../agent/runtime/model-runtime.js";
import {
  createDamagedCandidates,
  decideCandidateRepair,
  localDamage,
  MAX_CANDIDATE_REPAIRS,
} from "../../../agent/updater/damaged-candidate.js";
import type { Job } from "../../../agent/updater/pipeline-steps.js";
import { marksBundleBad, type PipelineStep } from "../../../agent/updater/verdicts.js";
import { EdgeFleetError, type ErrorCode } from "../../../shared/errors.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";
import { makeTempDir } from "../../helpers/temp-dir.js";

const SIGNED = "a".repeat(64);

describe("localDamage: which failures are the device's files, not the bundle", () => {
  it("integrity codes at loading and smoke-testing are local damage", () => {
    for (const step of ["loading", "smoke-testing"] as const) {
      for (const code of ["BUNDLE_HASH_MISMATCH", "BUNDLE_SIZE_MISMATCH", "BUNDLE_MISSING_FILE", "MANIFEST_MISMATCH"]) {
        expect(localDamage(step, { code: code as ErrorCode })).toBe(code);
      }
    }
  });

  it("a model that genuinely fails to load or fails its smoke test is not", () => {
    expect(localDamage("loading", { code: "MODEL_LOAD_FAILED" })).toBeNull();
    expect(localDamage("smoke-testing", { code: "SMOKE_TEST_FAILED" })).toBeNull();
    expect(localDamage("loading", { code: "HOST_CRASHED" })).toBeNull();
  });

  it("integrity failures at any other step keep condemning the bundle (signature, manifest, archive, download)", () => {
    const others: PipelineStep[] = ["downloading", "staging", "swapping", "probation"];
    for (const step of others) {
      for (const code of ["BUNDLE_HASH_MISMATCH", "MANIFEST_MISMATCH", "BUNDLE_UNSAFE_ENTRY"] as const) {
        expect(localDamage(step, { code })).toBeNull();
      }
    }
  });
});

describe("decideCandidateRepair", () => {
  it("re-extracts when the kept bundle still hashes to the signed sha256", () => {
    expect(decideCandidateRepair({ repairs: 0, keptBundleSha256: SIGNED, signedSha256: SIGNED })).toEqual({
      kind: "re-extract",
      from: "staging",
    });
  });

  it("downloads again when the kept bundle is damaged or gone", () => {
    for (const kept of ["b".repeat(64), null]) {
      expect(decideCandidateRepair({ repairs: 0, keptBundleSha256: kept, signedSha256: SIGNED })).toEqual({
        kind: "re-download",
        from: "downloading",
      });
    }
  });

  it("gives up after MAX_CANDIDATE_REPAIRS repairs, whatever the kept bundle", () => {
    expect(MAX_CANDIDATE_REPAIRS).toBe(2);
    expect(decideCandidateRepair({ repairs: 1, keptBundleSha256: SIGNED, signedSha256: SIGNED }).kind).toBe(
      "re-extract",
    );
    for (const kept of [SIGNED, null]) {
      const d = decideCandidateRepair({ repairs: MAX_CANDIDATE_REPAIRS, keptBundleSha256: kept, signedSha256: SIGNED });
      expect(d).toEqual({ kind: "give-up" });
    }
  });

  it("giving up uses a code that never marks the bundle bad; genuine failures still do", () => {
    expect(marksBundleBad("LOCAL_INTEGRITY_FAILED")).toBe(false);
    const genuine = ["MODEL_LOAD_FAILED", "SMOKE_TEST_FAILED", "BUNDLE_HASH_MISMATCH", "MANIFEST_MISMATCH"] as const;
    for (const code of genuine) expect(marksBundleBad(code)).toBe(true);
  });
});

describe("createDamagedCandidates: the I/O around the decision", () => {
  const MODEL = "tiny";
  const bundleBytes = Buffer.from("a genuine bundle");
  const sha = sha256Hex(bundleBytes);
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let dirs: { downloads: string; models: string };
  let unloaded: LoadedVersion[];
  const extracted = () => join(dirs.models, MODEL, sha);
  const exists = (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  const job = (loaded: LoadedVersion | null = null) =>
    ({ model: MODEL, ref: { version: "2.0.0", variant: "fp32", sha256: sha, releaseCounter: 2 }, loaded }) as Job;
  const damaged = () =>
    createDamagedCandidates({
      log: createLogger({ name: "damaged-candidate-test", level: "silent", pretty: false }),
      dirs,
      runtime: {
        unload: async (v) => {
          unloaded.push(v);
        },
      },
    });
  const mismatch = new EdgeFleetError("BUNDLE_HASH_MISMATCH", "model.onnx: SHA-256 on disk differs from the manifest");

  beforeEach(async () => {
    tmp = await makeTempDir("ef-damaged-");
    dirs = { downloads: join(tmp.path, "downloads"), models: join(tmp.path, "models") };
    unloaded = [];
    await mkdir(extracted(), { recursive: true });
    await writeFile(join(extracted(), "model.onnx"), "changed by a local process");
    await mkdir(dirs.downloads, { recursive: true });
    await writeFile(join(dirs.downloads, `${sha}.bundle`), bundleBytes);
  });

  afterEach(async () => {
    await tmp.cleanup();
  });

  it("intact kept bundle: unloads the candidate, deletes only the extracted copy, re-runs from staging", async () => {
    const loaded = { rss: async () => null } as unknown as LoadedVersion;
    const j = job(loaded);
    const out = await damaged().afterFailure(j, "loading", mismatch, 0);
    expect(out).toMatchObject({
      kind: "retry",
      from: "staging",
      repairs: 1,
      damage: {
        code: "BUNDLE_HASH_MISMATCH",
        details: { localRepair: { attempt: 1, max: 2, step: "loading", from: "staging", source: "kept bundle" } },
      },
    });
    expect(out.kind === "retry" && out.damage.message).toMatch(/candidate tiny@2\.0\.0 damaged on disk.*model\.onnx/);
    expect(unloaded).toEqual([loaded]);
    expect(j.loaded).toBeNull();
    expect(await exists(extracted())).toBe(false);
    expect(await readdir(dirs.downloads)).toEqual([`${sha}.bundle`]);
  });

  it("damaged kept bundle: deletes it and the extracted copy (a .part stays), re-runs from downloading", async () => {
    await writeFile(join(dirs.downloads, `${sha}.bundle`), "flipped");
    await writeFile(join(dirs.downloads, `${sha}.part`), "partial");
    const out = await damaged().afterFailure(job(), "smoke-testing", mismatch, 1);
    expect(out).toMatchObject({
      kind: "retry",
      from: "downloading",
      repairs: 2,
      damage: { details: { localRepair: { attempt: 2, source: "server" } } },
    });
    expect(await exists(extracted())).toBe(false);
    expect(await readdir(dirs.downloads)).toEqual([`${sha}.part`]);
  });

  it("past the cap: LOCAL_INTEGRITY_FAILED (not marked bad), nothing deleted", async () => {
    const out = await damaged().afterFailure(job(), "loading", mismatch, MAX_CANDIDATE_REPAIRS);
    expect(out.kind).toBe("fail");
    const error = out.kind === "fail" ? out.error : null;
    expect(error?.code).toBe("LOCAL_INTEGRITY_FAILED");
    expect(error?.details).toEqual({ damage: "BUNDLE_HASH_MISMATCH", repairs: 2 });
    expect(error?.message).toContain("not marked bad");
    expect(marksBundleBad(error!.code)).toBe(false);
    expect(await exists(extracted())).toBe(true);
  });

  it("a genuine failure comes back unchanged and touches nothing", async () => {
    const genuine = new EdgeFleetError("SMOKE_TEST_FAILED", "smoke test failed for tiny@2.0.0");
    expect(await damaged().afterFailure(job(), "smoke-testing", genuine, 0)).toEqual({ kind: "fail", error: genuine });
    expect(await exists(extracted())).toBe(true);
    expect(unloaded).toEqual([]);
  });
});
