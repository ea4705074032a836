import { readFile } from "node:fs/promises";
import { EdgeFleetError } from "../../shared/errors.js";
import { type Root, RootSchema, SignedRootSchema } from "../../shared/schemas/trust.js";
import { verifyRoleSignatures } from "../../shared/trust/envelope.js";
import { walkRootChain } from "../../shared/trust/root-chain.js";

/**
 * Parses a pinned root envelope and checks it is signed by a threshold of its own root keys
 * (architecture.md §3): a root.json that fails this was corrupted or tampered with at provisioning.
 */
export function parsePinnedRoot(json: unknown): Root {
  const env = SignedRootSchema.safeParse(json);
  if (!env.success) throw new EdgeFleetError("VALIDATION_FAILED", `root.json invalid: ${env.error.message}`);
  // Signatures are over the raw `signed` object, not the zod output (which may differ by defaults).
  const signed = (json as { signed: unknown }).signed;
  const root = RootSchema.parse(signed);
  verifyRoleSignatures({ signed, signatures: env.data.signatures }, root, "root");
  return root;
}

export async function loadPinnedRoot(path: string): Promise<Root> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new EdgeFleetError("VALIDATION_FAILED", `cannot read root ${path}: ${(err as Error).message}`);
  }
  return parsePinnedRoot(json);
}

/**
 * Applies a root chain published on `fleet/v1/trust/root` (a JSON array of signed roots, or one).
 * Returns the newest root reachable from `trusted` by valid rotations (TUF 5.3, architecture.md §3).
 */
export function applyRootChain(trusted: Root, payload: unknown): Root {
  const list = Array.isArray(payload) ? payload : [payload];
  const chain = list.map((item) => {
    const env = SignedRootSchema.safeParse(item);
    if (!env.success) throw new EdgeFleetError("VALIDATION_FAILED", `root chain entry invalid: ${env.error.message}`);
    return { signed: (item as { signed: unknown }).signed, signatures: env.data.signatures };
  });
  return walkRootChain(trusted, chain);
}

/** Caps for what arrives on the trust topic (issue 7): a chain longer than MAX_ROOT_CHAIN is refused too. */
export const MAX_TRUST_PAYLOAD_BYTES = 1024 * 1024;

/** The raw retained trust-topic payload → newest reachable root; size-capped before parsing. */
export function applyRootPayload(trusted: Root, payload: Buffer): Root {
  if (payload.length > MAX_TRUST_PAYLOAD_BYTES) {
    throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `root chain payload of ${payload.length} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString("utf8"));
  } catch {
    throw new EdgeFleetError("VALIDATION_FAILED", "root chain payload is not JSON");
  }
  return applyRootChain(trusted, json);
}
