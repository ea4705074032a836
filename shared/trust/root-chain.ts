import { EdgeFleetError } from "../errors.js";
import type { Envelope } from "../schemas/trust.js";
import { type Root, RootSchema } from "../schemas/trust.js";
import { countValidSignatures } from "./envelope.js";

export const MAX_ROOT_CHAIN = 32;

/**
 * Walks root rotations from the pinned `trusted` root (architecture.md §3, TUF 5.3): each v(N+1) must be
 * signed by a threshold of v(N)'s root keys *and* of its own, and carry version exactly N+1.
 * Returns the newest root reached; `trusted` if the chain is empty.
 */
export function walkRootChain(trusted: Root, chain: readonly Envelope<unknown>[]): Root {
  if (chain.length > MAX_ROOT_CHAIN) {
    throw new EdgeFleetError("VALIDATION_FAILED", `root chain longer than ${MAX_ROOT_CHAIN}`);
  }
  let current = trusted;
  for (const env of chain) {
    const parsed = RootSchema.safeParse(env.signed);
    if (!parsed.success)
      throw new EdgeFleetError("VALIDATION_FAILED", `root in chain invalid: ${parsed.error.message}`);
    const next = parsed.data;
    if (next.version <= current.version) continue; // already trusted or older: skip
    if (next.version !== current.version + 1) {
      throw new EdgeFleetError("VALIDATION_FAILED", `root chain skips from v${current.version} to v${next.version}`);
    }
    const byOld = countValidSignatures(env, current.roles.root, current.keys);
    const byNew = countValidSignatures(env, next.roles.root, next.keys);
    if (byOld < current.roles.root.threshold || byNew < next.roles.root.threshold) {
      throw new EdgeFleetError("SIGNATURE_THRESHOLD_NOT_MET", `root v${next.version} lacks threshold signatures`, {
        details: {
          byOld,
          byNew,
        },
      });
    }
    current = next;
  }
  return current;
}
