import { describe, expect, it } from "vitest";
import { type VerifyContext, verifyDesiredState } from "../../../agent/trust/verify-desired.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { Manifest } from "../../../shared/schemas/manifest.js";
import { signEnvelope } from "../../../shared/trust/envelope.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";
import { makeKeys, makeManifest } from "./helpers.js";

const keys = makeKeys();
const NOW = Date.parse("2025-06-01T00:00:00Z");
const SHA = sha256Hex("bundle");

function doc(over: Record<string, unknown> = {}, manifest: Manifest = makeManifest(), signer = keys.release) {
  return {
    _type: "desired",
    deviceId: "dev-1",
    seq: 5,
    issuedAt: "2025-06-01T00:00:00Z",
    expires: "2025-06-02T00:00:00Z",
    assignments: [
      {
        model: "vad",
        bundle: { sha256: SHA, size: 1000 },
        releaseCounter: manifest.releaseCounter,
        manifest: signEnvelope(manifest, [signer]),
      },
    ],
    ...over,
  };
}

const ctx = (over: Partial<VerifyContext> = {}): VerifyContext => ({
  root: keys.root,
  deviceId: "dev-1",
  lastSeq: 4,
  now: NOW,
  highestCounters: new Map(),
  badBundles: new Set(),
  ...over,
});

const codeOf = (input: unknown, c = ctx()) => {
  const r = verifyDesiredState(input, c);
  return r.ok ? "OK" : r.error.code;
};

describe("verifyDesiredState", () => {
  it("accepts a valid director-signed document", () => {
    const r = verifyDesiredState(signEnvelope(doc(), [keys.director]), ctx());
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.desired.seq).toBe(5);
      expect(r.value.desired.healthPolicy.probationSeconds).toBe(30);
    }
  });
  it("rejects a signature by an unknown key", () =>
    expect(codeOf(signEnvelope(doc(), [generateKeyPair()]))).toBe("SIGNATURE_THRESHOLD_NOT_MET"));
  it("rejects a signature by another role", () =>
    expect(codeOf(signEnvelope(doc(), [keys.release]))).toBe("SIGNATURE_THRESHOLD_NOT_MET"));
  it("rejects a tampered document", () => {
    const env = signEnvelope(doc(), [keys.director]);
    expect(codeOf({ ...env, signed: { ...env.signed, seq: 99 } })).toBe("SIGNATURE_THRESHOLD_NOT_MET");
  });
  it("rejects another device's document", () =>
    expect(codeOf(signEnvelope(doc({ deviceId: "dev-2" }), [keys.director]))).toBe("WRONG_DEVICE"));
  it("rejects a replayed seq", () => {
    const r = verifyDesiredState(signEnvelope(doc({ seq: 4 }), [keys.director]), ctx());
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("SEQ_REPLAYED");
      expect(r.seq).toBe(4);
    }
  });
  it("rejects an expired document", () =>
    expect(codeOf(signEnvelope(doc({ expires: "2025-05-31T00:00:00Z" }), [keys.director]))).toBe("EXPIRED"));
  it("rejects a manifest not signed by the release role", () =>
    expect(codeOf(signEnvelope(doc({}, makeManifest(), keys.director), [keys.director]))).toBe(
      "SIGNATURE_THRESHOLD_NOT_MET",
    ));
  it("rejects a release counter lower than the installed one", () =>
    expect(codeOf(signEnvelope(doc(), [keys.director]), ctx({ highestCounters: new Map([["vad", 2]]) }))).toBe(
      "RELEASE_COUNTER_ROLLBACK",
    ));
  it("accepts the same release counter as installed", () =>
    expect(codeOf(signEnvelope(doc(), [keys.director]), ctx({ highestCounters: new Map([["vad", 1]]) }))).toBe("OK"));
  it("rejects a bundle marked bad", () =>
    expect(codeOf(signEnvelope(doc(), [keys.director]), ctx({ badBundles: new Set([SHA]) }))).toBe(
      "BUNDLE_MARKED_BAD",
    ));
  it("accepts an incompatible release: the updater refuses it per model before download, visibly", () => {
    const m = makeManifest({ compatibility: { arch: ["arm64"], minMemoryMB: 0, executionProviders: ["cpu"] } });
    expect(codeOf(signEnvelope(doc({}, m), [keys.director]))).toBe("OK");
  });
  it("rejects a manifest whose release counter differs from the assignment", () => {
    const d = doc();
    d.assignments[0]!.releaseCounter = 2;
    expect(codeOf(signEnvelope(d, [keys.director]))).toBe("MANIFEST_MISMATCH");
  });
  it("rejects a manifest of another model", () => {
    const m = makeManifest({ model: { name: "other", version: "1.0.0", variant: "fp32" } });
    expect(codeOf(signEnvelope(doc({}, m), [keys.director]))).toBe("MANIFEST_MISMATCH");
  });
  it("rejects garbage", () => expect(codeOf({ hello: 1 })).toBe("VALIDATION_FAILED"));
  it("accepts one active and one side (shadow / A-B) assignment of a model, not two of either", () => {
    const base = doc().assignments[0]!;
    const side = (sha: string, strategy: Record<string, unknown>) => ({
      ...base,
      bundle: { sha256: sha, size: 1000 },
      strategy,
    });
    const other = sha256Hex("other");
    const pair = doc({ assignments: [base, side(other, { mode: "shadow", sampleRate: 0.5 })] });
    expect(codeOf(signEnvelope(pair, [keys.director]))).toBe("OK");
    const twoSides = doc({
      assignments: [base, side(other, { mode: "ab", weight: 0.5 }), side(sha256Hex("third"), { mode: "shadow" })],
    });
    expect(codeOf(signEnvelope(twoSides, [keys.director]))).toBe("VALIDATION_FAILED");
    const twoActive = doc({ assignments: [base, side(other, { mode: "active" })] });
    expect(codeOf(signEnvelope(twoActive, [keys.director]))).toBe("VALIDATION_FAILED");
    const sameBundle = doc({ assignments: [base, side(SHA, { mode: "ab", weight: 0.5 })] });
    expect(codeOf(signEnvelope(sameBundle, [keys.director]))).toBe("VALIDATION_FAILED");
  });
});
