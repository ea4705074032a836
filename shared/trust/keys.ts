import nacl from "tweetnacl";
import { canonicalBytes } from "../canonical-json.js";
import { sha256Hex } from "../hash.js";
import type { PublicKey } from "../schemas/trust.js";

export interface KeyPair {
  keyid: string;
  publicKey: PublicKey;
  /** 64-byte tweetnacl secret key (seed + public key), hex. */
  secretKeyHex: string;
}

export function publicKeyFromBytes(pub: Uint8Array): PublicKey {
  return { keytype: "ed25519", scheme: "ed25519", keyval: { public: Buffer.from(pub).toString("hex") } };
}

/** TUF-style key id: SHA-256 of the canonical JSON of the public key object. */
export function keyIdOf(key: PublicKey): string {
  return sha256Hex(canonicalBytes(key));
}

export function generateKeyPair(): KeyPair {
  const kp = nacl.sign.keyPair();
  const publicKey = publicKeyFromBytes(kp.publicKey);
  return { keyid: keyIdOf(publicKey), publicKey, secretKeyHex: Buffer.from(kp.secretKey).toString("hex") };
}

export function keyPairFromSecretHex(secretKeyHex: string): KeyPair {
  const secret = Buffer.from(secretKeyHex, "hex");
  if (secret.length !== nacl.sign.secretKeyLength) throw new Error("ed25519 secret key must be 64 bytes");
  const kp = nacl.sign.keyPair.fromSecretKey(new Uint8Array(secret));
  const publicKey = publicKeyFromBytes(kp.publicKey);
  return { keyid: keyIdOf(publicKey), publicKey, secretKeyHex };
}
