import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import { sha256Hex } from "../../shared/hash.js";

/**
 * An installed bundle file's bytes, only if they hash to the manifest's `sha256` as they are read.
 * The directory is re-verified before a load, but the model host and the smoke test read files
 * later; checking the very bytes used closes that window (issue 7, "a local process modifying the
 * staged bundle after verification"). A mismatch is the device's copy, not the bundle:
 * BUNDLE_HASH_MISMATCH, which the updater repairs (damaged-candidate.ts, self-heal.ts).
 */
export async function readVerified(path: string, sha256: string): Promise<Buffer> {
  const bytes = await readFile(path);
  const actual = sha256Hex(bytes);
  if (actual !== sha256) {
    throw new EdgeFleetError("BUNDLE_HASH_MISMATCH", `${basename(path)} hashes to ${actual}, manifest says ${sha256}`);
  }
  return bytes;
}
