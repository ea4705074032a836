import fc from "fast-check";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { canonicalBytes } from "../../../shared/canonical-json.js";
import { countValidSignatures, signEnvelope } from "../../../shared/trust/envelope.js";
import { generateKeyPair } from "../../../shared/trust/keys.js";

describe("signEnvelope through node:crypto", () => {
  it("gives tweetnacl's exact signature bytes, which tweetnacl verifies", () => {
    const keys = [generateKeyPair(), generateKeyPair()];
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const doc = { _type: "desired", value };
        const env = signEnvelope(doc, keys);
        const message = canonicalBytes(doc);
        keys.forEach((k, i) => {
          const expected = nacl.sign.detached(message, new Uint8Array(Buffer.from(k.secretKeyHex, "hex")));
          expect(env.signatures[i]).toEqual({ keyid: k.keyid, sig: Buffer.from(expected).toString("hex") });
        });
        const role = { keyids: keys.map((k) => k.keyid), threshold: 2 };
        const pub = Object.fromEntries(keys.map((k) => [k.keyid, k.publicKey]));
        expect(countValidSignatures(env, role, pub)).toBe(2);
      }),
      { numRuns: 50 },
    );
  });
});
