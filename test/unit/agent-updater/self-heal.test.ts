import { describe, expect, it } from "vitest";
import { DEFAULT_BACKOFF } from "../../../agent/transport/backoff.js";
import {
  decideAfterFailure,
  decideRepair,
  isRepair,
  MAX_DAMAGED_ATTEMPTS,
  type RepairFacts,
  repairResumeStep,
} from "../../../agent/updater/self-heal.js";
import type { InstalledRef } from "../../../shared/schemas/device-state.js";
import { seededRandom } from "../../../shared/seeded-random.js";

const C: InstalledRef = { version: "1.0.0", variant: "fp32", sha256: "c".repeat(64), releaseCounter: 1 };
const N: InstalledRef = { version: "2.0.0", variant: "fp32", sha256: "d".repeat(64), releaseCounter: 2 };

/** The start-up case: committed C found damaged, the accepted desired state still assigns C. */
const facts = (over: Partial<RepairFacts> = {}): RepairFacts => ({
  record: { state: "committed", committed: C, candidate: null },
  cause: { kind: "load-failed", code: "BUNDLE_HASH_MISMATCH" },
  activeSha: C.sha256,
  bad: false,
  ...over,
});

describe("decideRepair: after the committed version failed to load", () => {
  it("re-acquires the committed bundle for every integrity code while it is still assigned", () => {
    for (const code of ["BUNDLE_HASH_MISMATCH", "BUNDLE_MISSING_FILE", "BUNDLE_SIZE_MISMATCH", "MANIFEST_MISMATCH"]) {
      expect(decideRepair(facts({ cause: { kind: "load-failed", code } as RepairFacts["cause"] }))).toEqual({
        kind: "repair",
        ref: C,
      });
    }
  });

  it("also from `failed`, `reverted` and `idle` records (a failed candidate does not block the repair)", () => {
    for (const state of ["failed", "reverted", "idle"] as const) {
      expect(decideRepair(facts({ record: { state, committed: C, candidate: N } })).kind).toBe("repair");
    }
  });

  it("reports instead when the accepted desired state assigns another bundle or none", () => {
    expect(decideRepair(facts({ activeSha: N.sha256 }))).toEqual({ kind: "report" });
    expect(decideRepair(facts({ activeSha: null }))).toEqual({ kind: "report" });
  });

  it("reports instead when the committed bundle is on the bad list (never retried)", () => {
    expect(decideRepair(facts({ bad: true }))).toEqual({ kind: "report" });
  });

  it("leaves non-integrity failures alone (not damage: e.g. the runtime could not load it)", () => {
    for (const code of ["MODEL_LOAD_FAILED", "HOST_CRASHED", "INTERNAL"] as const) {
      expect(decideRepair(facts({ cause: { kind: "load-failed", code } }))).toEqual({ kind: "none" });
    }
  });

  it("leaves the model alone while an update (or a repair) is in progress: the resumed work decides", () => {
    for (const state of ["verifying", "downloading", "staging", "loading", "swapping", "probation"] as const) {
      expect(decideRepair(facts({ record: { state, committed: C, candidate: N } }))).toEqual({ kind: "none" });
      expect(decideRepair(facts({ record: { state, committed: C, candidate: C } }))).toEqual({ kind: "none" });
    }
  });

  it("has nothing to repair without a committed version", () => {
    expect(decideRepair(facts({ record: { state: "failed", committed: null, candidate: N } }))).toEqual({
      kind: "none",
    });
  });
});

describe("decideRepair: when a retry timer fires", () => {
  const waiting = { state: "failed" as const, committed: C, candidate: C };
  const retry = { kind: "retry" as const, sha256: C.sha256 };

  it("repairs again while the record still waits for this repair and the bundle is still assigned", () => {
    expect(decideRepair(facts({ record: waiting, cause: retry }))).toEqual({ kind: "repair", ref: C });
  });

  it("drops the retry once a newer update took over the record", () => {
    const cases = [
      { state: "committed" as const, committed: N, candidate: null }, // a new version was committed
      { state: "failed" as const, committed: C, candidate: N }, // a new candidate failed
      { state: "downloading" as const, committed: C, candidate: N }, // a new candidate is under way
      { state: "committed" as const, committed: C, candidate: null }, // repaired some other way
    ];
    for (const record of cases) expect(decideRepair(facts({ record, cause: retry }))).toEqual({ kind: "none" });
  });

  it("drops the retry when the desired state moved on (reconciliation decides; the failure is already reported)", () => {
    expect(decideRepair(facts({ record: waiting, cause: retry, activeSha: N.sha256 }))).toEqual({ kind: "none" });
    expect(decideRepair(facts({ record: waiting, cause: retry, bad: true }))).toEqual({ kind: "none" });
  });
});

describe("decideAfterFailure", () => {
  const random = () => 0.999;

  it("retries transport failures with the agent's full-jitter backoff, for as long as they last", () => {
    for (const code of ["DOWNLOAD_FAILED", "NOT_CONNECTED", "TIMEOUT"] as const) {
      for (const attempt of [0, 3, 50]) {
        const d = decideAfterFailure({ code, attempt }, random);
        expect(d.kind).toBe("retry");
        const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** attempt);
        if (d.kind === "retry") expect(d.delayMs).toBe(Math.floor(0.999 * ceiling));
      }
    }
  });

  it("spreads the delays (full jitter, never a fixed period)", () => {
    const r = seededRandom(7);
    const delays = Array.from({ length: 20 }, () => decideAfterFailure({ code: "DOWNLOAD_FAILED", attempt: 10 }, r));
    const values = new Set(delays.map((d) => (d.kind === "retry" ? d.delayMs : -1)));
    expect(values.size).toBeGreaterThan(15);
    for (const v of values) expect(v).toBeGreaterThanOrEqual(0);
    for (const v of values) expect(v).toBeLessThan(DEFAULT_BACKOFF.capMs);
  });

  it("retries integrity failures (wrong bytes served, files changed again before loading) a bounded number of times", () => {
    const codes = ["BUNDLE_HASH_MISMATCH", "BUNDLE_SIZE_MISMATCH", "BUNDLE_MISSING_FILE", "MANIFEST_MISMATCH"] as const;
    for (const code of codes) {
      expect(decideAfterFailure({ code, attempt: 0 }, random).kind).toBe("retry");
      expect(decideAfterFailure({ code, attempt: MAX_DAMAGED_ATTEMPTS - 2 }, random).kind).toBe("retry");
      expect(decideAfterFailure({ code, attempt: MAX_DAMAGED_ATTEMPTS - 1 }, random)).toEqual({ kind: "give-up" });
    }
  });

  it("gives up at once on failures the same bytes would repeat, and never marks anything bad itself", () => {
    const codes = [
      "MODEL_LOAD_FAILED",
      "SMOKE_TEST_FAILED",
      "HOST_CRASHED",
      "BUNDLE_UNLISTED_ENTRY", // a property of the signed bytes: the same on every download
      "INCOMPATIBLE",
      "INTERNAL",
    ] as const;
    for (const code of codes) expect(decideAfterFailure({ code, attempt: 0 }, random)).toEqual({ kind: "give-up" });
  });
});

describe("repairResumeStep and isRepair", () => {
  it("resumes an interrupted repair where the update pipeline would", () => {
    expect(repairResumeStep("verifying")).toBe("downloading");
    expect(repairResumeStep("downloading")).toBe("downloading");
    expect(repairResumeStep("staging")).toBe("staging");
    expect(repairResumeStep("loading")).toBe("loading");
    expect(repairResumeStep("smoke-testing")).toBe("smoke-testing");
    expect(repairResumeStep("swapping")).toBe("loading");
    expect(repairResumeStep("probation")).toBe("loading"); // never persisted by a repair; harmless
    expect(repairResumeStep("reverting")).toBe("downloading");
    for (const s of ["idle", "committed", "failed", "reverted"] as const) expect(repairResumeStep(s)).toBeNull();
  });

  it("a repair is a record whose candidate is its own committed bundle", () => {
    expect(isRepair({ committed: C, candidate: C })).toBe(true);
    expect(isRepair({ committed: C, candidate: N })).toBe(false);
    expect(isRepair({ committed: C, candidate: null })).toBe(false);
    expect(isRepair({ committed: null, candidate: C })).toBe(false);
  });
});
