import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadOrCreateKeys } from "../../../fleet-server/keys/key-store.js";
import {
  buildDesiredState,
  DESIRED_TTL_MS,
  mergeAssignments,
  signDesiredState,
} from "../../../fleet-server/rollout/desired-state.js";
import { SignedDesiredStateSchema } from "../../../shared/schemas/desired-state.js";
import type { SignedManifest } from "../../../shared/schemas/manifest.js";
import { SignedRootSchema } from "../../../shared/schemas/trust.js";
import { signEnvelope, verifyRoleSignatures } from "../../../shared/trust/envelope.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";

const dir = mkdtempSync(join(tmpdir(), "fleet-keys-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const manifest: SignedManifest = signEnvelope(
  {
    _type: "manifest" as const,
    model: { name: "vad", version: "1.0.0", variant: "fp32" as const },
    releaseCounter: 1,
    createdAt: "2025-01-01T00:00:00.000Z",
    files: [{ path: "model.onnx", size: 1, sha256: "e".repeat(64) }],
    inputs: [{ name: "x", datatype: "FP32" as const, shape: [1] }],
    outputs: [{ name: "y", datatype: "FP32" as const, shape: [1] }],
    opset: 16,
    compatibility: { arch: [], minMemoryMB: 0, executionProviders: ["cpu"] },
    lineage: {},
    quantization: null,
  },
  [generateKeyPair()],
);
const assignment = (model: string, sha: string, releaseCounter = 1) => ({
  model,
  bundle: { sha256: sha.repeat(64), size: 10 },
  releaseCounter,
  manifest,
});

describe("keys", () => {
  it("creates root/release/director keys with private modes and a valid root.json, stable across restarts", () => {
    const keys = loadOrCreateKeys(dir, new Date("2025-01-01T00:00:00Z"));
    expect(statSync(join(dir, "keys", "root", "root.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "keys", "root")).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "keys", "director.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "admin-token")).mode & 0o777).toBe(0o600);
    const root = SignedRootSchema.parse(JSON.parse(readFileSync(keys.rootJsonPath, "utf8")));
    expect(() => verifyRoleSignatures(root, root.signed, "root")).not.toThrow();
    expect(root.signed.expires.startsWith("2034-12-")).toBe(true);
    const again = loadOrCreateKeys(dir, new Date());
    expect(again.director.keyid).toBe(keys.director.keyid);
    expect(again.adminToken).toBe(keys.adminToken);
    expect(again.signedRoot).toEqual(keys.signedRoot);
  });
});

describe("desired state", () => {
  it("is signed by the director key named in root.json and parses with the shared schema", () => {
    const keys = loadOrCreateKeys(dir, new Date());
    const now = Date.parse("2025-06-01T00:00:00Z");
    const doc = buildDesiredState({
      deviceId: "dev-1",
      seq: 7,
      now,
      assignments: mergeAssignments([], assignment("vad", "c")),
      healthPolicy: {
        probationSeconds: 30,
        probationRequests: 0,
        maxErrorRatePercent: 5,
        maxP95LatencyRatio: 3,
        maxHostRestarts: 2,
      },
      rollout: { id: "r-1", stage: 0 },
    });
    const signed = signDesiredState(doc, keys.director);
    const parsed = SignedDesiredStateSchema.parse(JSON.parse(JSON.stringify(signed)));
    const root = SignedRootSchema.parse(JSON.parse(readFileSync(keys.rootJsonPath, "utf8"))).signed;
    expect(() => verifyRoleSignatures(parsed, root, "director")).not.toThrow();
    // The release key is not a director key: a document it signed must not pass.
    expect(() => verifyRoleSignatures(signDesiredState(doc, keys.release!), root, "director")).toThrow();
    expect(Date.parse(parsed.signed.expires) - Date.parse(parsed.signed.issuedAt)).toBe(DESIRED_TTL_MS);
    expect(parsed.signed.seq).toBe(7);
    // Root v1 alone is what devices pin already: no chain is attached.
    expect(parsed.rootChain).toBeUndefined();
    // After a rotation the chain rides beside `signed` (outside the director's signature).
    const withChain = signDesiredState(doc, keys.director, [keys.signedRoot, keys.signedRoot]);
    expect(withChain.rootChain).toHaveLength(2);
    expect(withChain.signatures).toEqual(signed.signatures);
  });

  it("keeps other models' assignments and replaces the same model's", () => {
    const prev = mergeAssignments(mergeAssignments([], assignment("kws", "1")), assignment("vad", "2"));
    const next = mergeAssignments(prev, assignment("vad", "3", 2));
    expect(next.map((a) => [a.model, a.bundle.sha256[0], a.releaseCounter])).toEqual([
      ["kws", "1", 1],
      ["vad", "3", 2],
    ]);
  });
});
