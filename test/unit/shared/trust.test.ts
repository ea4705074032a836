import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../shared/canonical-json.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import type { Root } from "../../../shared/schemas/trust.js";
import { countValidSignatures, signEnvelope, verifyRoleSignatures } from "../../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair } from "../../../shared/trust/keys.js";
import { walkRootChain } from "../../../shared/trust/root-chain.js";

function makeRoot(version: number, rootKeys: KeyPair[], threshold: number, release: KeyPair[]): Root {
  const keys: Root["keys"] = {};
  for (const k of [...rootKeys, ...release]) keys[k.keyid] = k.publicKey;
  return {
    _type: "root",
    version,
    expires: "2099-01-01T00:00:00Z",
    keys,
    roles: {
      root: { keyids: rootKeys.map((k) => k.keyid), threshold },
      release: { keyids: release.map((k) => k.keyid), threshold: 1 },
      director: { keyids: release.map((k) => k.keyid), threshold: 1 },
    },
  };
}

describe("canonical JSON (RFC 8785)", () => {
  it("sorts keys and normalises numbers", () => {
    expect(canonicalJson({ b: 1, a: [1e21, 0.1, -0], c: "é" })).toBe('{"a":[1e+21,0.1,0],"b":1,"c":"é"}');
  });
});

describe("envelope signatures", () => {
  const r1 = generateKeyPair();
  const r2 = generateKeyPair();
  const rel = generateKeyPair();
  const root = makeRoot(1, [r1, r2], 2, [rel]);

  it("counts each trusted key once, however often it signs", () => {
    const env = signEnvelope({ x: 1 }, [r1]);
    const dup = { ...env, signatures: [env.signatures[0]!, env.signatures[0]!, env.signatures[0]!] };
    expect(countValidSignatures(dup, root.roles.root, root.keys)).toBe(1);
    expect(() => verifyRoleSignatures(dup, root, "root")).toThrow(EdgeFleetError);
  });

  it("accepts a threshold of distinct keys and rejects a modified document", () => {
    const env = signEnvelope({ x: 1 }, [r1, r2]);
    expect(() => verifyRoleSignatures(env, root, "root")).not.toThrow();
    const tampered = { ...env, signed: { x: 2 } };
    expect(countValidSignatures(tampered, root.roles.root, root.keys)).toBe(0);
  });

  it("ignores signatures by keys of another role", () => {
    const env = signEnvelope({ x: 1 }, [rel]);
    expect(countValidSignatures(env, root.roles.root, root.keys)).toBe(0);
    expect(countValidSignatures(env, root.roles.release, root.keys)).toBe(1);
  });

  it("signature bytes flipped are not valid", () => {
    const env = signEnvelope({ x: 1 }, [rel]);
    const sig = env.signatures[0]!;
    const flipped = { keyid: sig.keyid, sig: (sig.sig[0] === "0" ? "1" : "0") + sig.sig.slice(1) };
    expect(countValidSignatures({ ...env, signatures: [flipped] }, root.roles.release, root.keys)).toBe(0);
  });
});

describe("root chain", () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const rel = generateKeyPair();
  const v1 = makeRoot(1, [a], 1, [rel]);

  it("accepts v2 signed by old and new root keys", () => {
    const v2 = makeRoot(2, [b], 1, [rel]);
    expect(walkRootChain(v1, [signEnvelope(v2, [a, b])]).version).toBe(2);
  });

  it("rejects v2 signed only by the new keys", () => {
    const v2 = makeRoot(2, [b], 1, [rel]);
    expect(() => walkRootChain(v1, [signEnvelope(v2, [b])])).toThrow(/threshold/);
  });

  it("rejects a version skip", () => {
    const v3 = makeRoot(3, [a], 1, [rel]);
    expect(() => walkRootChain(v1, [signEnvelope(v3, [a])])).toThrow(/skips/);
  });
});
