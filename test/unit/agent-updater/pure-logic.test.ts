import { describe, expect, it } from "vitest";
import { DEFAULT_BACKOFF, fullJitterDelay } from "../../../agent/transport/backoff.js";
import { type ModelCurrent, planUpdate } from "../../../agent/updater/plan-update.js";
import { planResume } from "../../../agent/updater/verdicts.js";
import { sha256Hex } from "../../../shared/hash.js";
import { type DesiredState, DesiredStateSchema } from "../../../shared/schemas/desired-state.js";
import { seededRandom } from "../../../shared/seeded-random.js";
import { makeKeys, makeManifest, signedManifest } from "./helpers.js";

describe("fullJitterDelay", () => {
  it("stays within [0, min(cap, base*2^attempt))", () => {
    const random = seededRandom(42);
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** attempt);
      for (let i = 0; i < 50; i++) {
        const d = fullJitterDelay(attempt, random);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
    }
  });
  it("is deterministic for a seed and uses the full range", () => {
    const a = Array.from({ length: 5 }, (_, i) => fullJitterDelay(i, seededRandom(7)));
    const b = Array.from({ length: 5 }, (_, i) => fullJitterDelay(i, seededRandom(7)));
    expect(a).toEqual(b);
    expect(fullJitterDelay(3, () => 0)).toBe(0);
    expect(fullJitterDelay(3, () => 0.999999)).toBe(3999);
    expect(fullJitterDelay(100, () => 0.999999)).toBe(29_999);
  });
});

const keys = makeKeys();
const SHA_A = sha256Hex("a");
const SHA_B = sha256Hex("b");
const ref = (sha256: string, releaseCounter = 1) => ({
  version: "1.0.0",
  variant: "fp32" as const,
  sha256,
  releaseCounter,
});

function desired(sha: string): DesiredState {
  return DesiredStateSchema.parse({
    _type: "desired",
    deviceId: "dev-1",
    seq: 1,
    issuedAt: "2025-06-01T00:00:00Z",
    expires: "2025-06-02T00:00:00Z",
    assignments: [
      {
        model: "vad",
        bundle: { sha256: sha, size: 10 },
        releaseCounter: 1,
        manifest: signedManifest(keys, makeManifest()),
      },
    ],
  });
}

describe("planUpdate", () => {
  const cur = (over: Partial<ModelCurrent>): ModelCurrent[] => [
    { model: "vad", state: "idle", committed: null, candidate: null, ...over },
  ];
  it("installs a model the device does not have", () => {
    expect(planUpdate([], desired(SHA_A))).toMatchObject([{ kind: "install", model: "vad", supersedes: null }]);
  });
  it("does nothing when the bundle is committed", () => {
    expect(planUpdate(cur({ state: "committed", committed: ref(SHA_A) }), desired(SHA_A))).toMatchObject([
      { kind: "noop", reason: "already-committed" },
    ]);
  });
  it("does nothing while the same bundle is in progress", () => {
    expect(planUpdate(cur({ state: "downloading", candidate: ref(SHA_A) }), desired(SHA_A))).toMatchObject([
      { kind: "noop", reason: "in-progress" },
    ]);
  });
  it("never retries a failed bundle", () => {
    expect(planUpdate(cur({ state: "failed", candidate: ref(SHA_A) }), desired(SHA_A))).toMatchObject([
      { kind: "noop", reason: "already-failed" },
    ]);
  });
  it("installs a new bundle over a committed one", () => {
    expect(planUpdate(cur({ state: "committed", committed: ref(SHA_A) }), desired(SHA_B))).toMatchObject([
      { kind: "install", supersedes: null },
    ]);
  });
  it("supersedes an in-progress candidate", () => {
    expect(planUpdate(cur({ state: "downloading", candidate: ref(SHA_A) }), desired(SHA_B))).toMatchObject([
      { kind: "install", supersedes: { sha256: SHA_A } },
    ]);
  });
});

describe("planResume", () => {
  it("resumes interrupted steps from the right place", () => {
    expect(planResume("downloading", 0, 2)).toEqual({ kind: "run", from: "downloading" });
    expect(planResume("verifying", 0, 2)).toEqual({ kind: "run", from: "downloading" });
    expect(planResume("smoke-testing", 0, 2)).toEqual({ kind: "run", from: "smoke-testing" });
    expect(planResume("swapping", 0, 2)).toEqual({ kind: "run", from: "loading" });
    expect(planResume("committed", 0, 2)).toEqual({ kind: "none" });
  });
  it("counts restarts during probation against the candidate", () => {
    expect(planResume("probation", 2, 2)).toEqual({ kind: "run", from: "loading" });
    expect(planResume("probation", 3, 2)).toMatchObject({ kind: "revert", code: "HOST_CRASHED" });
  });
});
