import nacl from "tweetnacl";
import { canonicalBytes } from "../canonical-json.js";
import { EdgeFleetError } from "../errors.js";
import type { Envelope, Role, RoleName, Root, Signature } from "../schemas/trust.js";
import type { KeyPair } from "./keys.js";

/** Signs the canonical JSON of `signed` with each key (architecture.md §3). */
export function signEnvelope<T>(signed: T, keys: readonly KeyPair[]): Envelope<T> {
  const message = canonicalBytes(signed);
  const signatures: Signature[] = keys.map((k) => ({
    keyid: k.keyid,
    sig: Buffer.from(nacl.sign.detached(message, new Uint8Array(Buffer.from(k.secretKeyHex, "hex")))).toString("hex"),
  }));
  return { signed, signatures };
}

/**
 * Counts valid signatures by distinct trusted key ids of `role`.
 * Invariants: a key id counts at most once however often it appears (no duplicate-signature
 * inflation); a signature is only ever a yes/no answer, never used as an identifier
 * (tweetnacl signatures are malleable, architecture.md §3).
 */
export function countValidSignatures(envelope: Envelope<unknown>, role: Role, keys: Root["keys"]): number {
  const message = canonicalBytes(envelope.signed);
  const trusted = new Set(role.keyids);
  const counted = new Set<string>();
  for (const s of envelope.signatures) {
    if (!trusted.has(s.keyid) || counted.has(s.keyid)) continue;
    const key = keys[s.keyid];
    if (!key) continue;
    const pub = Buffer.from(key.keyval.public, "hex");
    const sig = Buffer.from(s.sig, "hex");
    if (pub.length !== nacl.sign.publicKeyLength || sig.length !== nacl.sign.signatureLength) continue;
    if (nacl.sign.detached.verify(new Uint8Array(message), new Uint8Array(sig), new Uint8Array(pub))) {
      counted.add(s.keyid);
    }
  }
  return counted.size;
}

/** Throws SIGNATURE_THRESHOLD_NOT_MET unless `envelope` carries a threshold of `roleName` signatures under `root`. */
export function verifyRoleSignatures(envelope: Envelope<unknown>, root: Root, roleName: RoleName): void {
  const role = root.roles[roleName];
  const valid = countValidSignatures(envelope, role, root.keys);
  if (valid < role.threshold) {
    throw new EdgeFleetError(
      "SIGNATURE_THRESHOLD_NOT_MET",
      `${roleName} signatures: ${valid} valid of threshold ${role.threshold}`,
      { details: { role: roleName, valid, threshold: role.threshold } },
    );
  }
}
