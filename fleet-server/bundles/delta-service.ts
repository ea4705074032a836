import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { encodeDelta } from "../../shared/delta/model-delta.js";
import { sha256Hex } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import type { BlobStore } from "./bundle-store.js";

/** A built delta, as offered in an assignment (`Assignment.delta`). */
export interface DeltaRef {
  sha256: string;
  size: number;
  /** The bundle the delta starts from (the device's committed one). */
  base: string;
}

/**
 * Offer a delta only when it saves at least half of the full bundle: below that the saving does not pay for
 * the device's extra work (hashing the base, rebuilding) and the second artifact on the server.
 */
export const MAX_DELTA_SHARE = 0.5;
/**
 * ... and only when it saves at least this much: a small bundle costs little airtime anyway, and a full
 * download leaves the device its `.bundle` copy, which repairs re-extract from without a network.
 */
export const MIN_DELTA_SAVING = 64 * 1024;
/** Built deltas (and refusals) remembered per (base, target); deterministic, so a restart rebuilds the same bytes. */
const MAX_REMEMBERED = 1024;

const MODEL_ENTRY = "model.onnx";

/** The regular-file entries of a bundle (tar, gzipped or not), in archive order. */
export async function readBundleEntries(path: string): Promise<{ path: string; bytes: Buffer }[]> {
  let data = await readFile(path);
  if (data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data);
  const out: { path: string; bytes: Buffer }[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      onReadEntry: (entry: ReadEntry) => {
        const parts: Buffer[] = [];
        entry.on("data", (c: Buffer) => parts.push(c));
        entry.on("end", () => {
          if (entry.type === "File") out.push({ path: entry.path, bytes: Buffer.concat(parts) });
        });
      },
    });
    parser.on("end", () => resolve());
    parser.on("error", reject);
    parser.end(data);
  });
  return out;
}

/**
 * Builds tensor-level deltas between two bundles of a model (issue 17) into the content-addressed bundle store,
 * so the chunk server and `GET /v1/bundles/{sha256}` serve them like bundles. Built lazily on first need (the
 * first device on the base version that a rollout reaches), at most once per pair (concurrent callers share
 * the build). A delta that fails or saves too little is remembered as `null`: the device gets the full bundle.
 */
export function createDeltaService(deps: { store: BlobStore; log: Logger }) {
  const { store, log } = deps;
  const built = new Map<string, Promise<DeltaRef | null>>();
  /** Settled builds, for the desired-state signer, which runs inside a synchronous SQLite transaction. */
  const settled = new Map<string, DeltaRef | null>();

  async function build(base: string, target: string): Promise<DeltaRef | null> {
    const [baseEntries, targetEntries] = await Promise.all([
      readBundleEntries(store.bundlePath(base)),
      readBundleEntries(store.bundlePath(target)),
    ]);
    const baseModel = baseEntries.find((e) => e.path === MODEL_ENTRY);
    const targetModel = targetEntries.find((e) => e.path === MODEL_ENTRY);
    if (!baseModel || !targetModel) return null;
    const { bytes } = encodeDelta({
      baseModel: baseModel.bytes,
      targetModel: targetModel.bytes,
      // Every other payload file as it is in the bundle, each checked on the device against the signed
      // manifest. Not manifest.json: the device writes that from the signed manifest in its assignment.
      files: targetEntries.filter((e) => e.path !== MODEL_ENTRY && e.path !== "manifest.json"),
    });
    const fullSize = (await readFile(store.bundlePath(target))).length;
    if (bytes.length > fullSize * MAX_DELTA_SHARE || fullSize - bytes.length < MIN_DELTA_SAVING) {
      log.info({ base, target, delta: bytes.length, full: fullSize }, "delta saves too little; not offered");
      return null;
    }
    const sha256 = sha256Hex(bytes);
    if (!(await store.bundleExists(sha256))) {
      const dir = await store.makeTempDir("delta-");
      const tmp = join(dir, `delta-${randomBytes(6).toString("hex")}`);
      await writeFile(tmp, bytes);
      await store.commitBundle(tmp, sha256);
      await rm(dir, { recursive: true, force: true });
    }
    log.info({ base, target, delta: sha256, bytes: bytes.length, full: fullSize }, "delta built");
    return { sha256, size: bytes.length, base };
  }

  return {
    /** The delta from bundle `base` to bundle `target`, built if needed; null when none is worth offering. */
    ensure(base: string, target: string): Promise<DeltaRef | null> {
      if (base === target) return Promise.resolve(null);
      const key = `${base} ${target}`;
      let p = built.get(key);
      if (!p) {
        if (built.size >= MAX_REMEMBERED) built.clear();
        if (settled.size >= MAX_REMEMBERED) settled.clear();
        p = build(base, target)
          .catch((err: unknown) => {
            log.warn({ base, target, err }, "delta build failed; devices get the full bundle");
            return null;
          })
          .then((ref) => {
            settled.set(key, ref);
            return ref;
          });
        built.set(key, p);
      }
      return p;
    },
    /** The delta if it is built (null: none to offer, or not built yet; `ensure` starts a build). */
    peek(base: string, target: string): DeltaRef | null {
      return settled.get(`${base} ${target}`) ?? null;
    },
  };
}
export type DeltaService = ReturnType<typeof createDeltaService>;
