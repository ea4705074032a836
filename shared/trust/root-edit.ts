import { EdgeFleetError } from "../errors.js";
import type { Envelope, RoleName, Root } from "../schemas/trust.js";
import { signEnvelope } from "./envelope.js";
import type { KeyPair } from "./keys.js";

/**
 * Pure builders for root rotation (architecture.md §3, TUF 5.3): a new root version names new keys for one
 * role and must then be signed by a threshold of the old root keys *and* of the new ones.
 */

export interface RoleChange {
  role: RoleName;
  keys: readonly KeyPair[];
  threshold: number;
}

/** Root v(N+1): `change` replaces the role's keys; keys no role uses any more are dropped. */
export function nextRoot(current: Root, change: RoleChange, expires: Date): Root {
  if (change.threshold < 1 || change.threshold > change.keys.length) {
    throw new EdgeFleetError("VALIDATION_FAILED", `threshold ${change.threshold} of ${change.keys.length} keys`);
  }
  const roles = {
    ...current.roles,
    [change.role]: { keyids: change.keys.map((k) => k.keyid), threshold: change.threshold },
  };
  const used = new Set(Object.values(roles).flatMap((r) => r.keyids));
  const keys: Root["keys"] = {};
  for (const id of used) {
    const fromChange = change.keys.find((k) => k.keyid === id);
    const pub = fromChange?.publicKey ?? current.keys[id];
    if (!pub) throw new EdgeFleetError("VALIDATION_FAILED", `key ${id} unknown`);
    keys[id] = pub;
  }
  return { _type: "root", version: current.version + 1, expires: expires.toISOString(), keys, roles };
}

/** Adds signatures by `keys` (skipping key ids that already signed): one step of split custody. */
export function addSignatures<T>(env: Envelope<T>, keys: readonly KeyPair[]): Envelope<T> {
  const have = new Set(env.signatures.map((s) => s.keyid));
  const fresh = keys.filter((k) => !have.has(k.keyid));
  return { signed: env.signed, signatures: [...env.signatures, ...signEnvelope(env.signed, fresh).signatures] };
}

/** Which of `keys` may sign `root` as a root key: old keys for the old role, new for the new. */
export function rootSigners(root: Root, keys: readonly KeyPair[]): KeyPair[] {
  return keys.filter((k) => root.roles.root.keyids.includes(k.keyid));
}
