import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EdgeFleetError } from "../../shared/errors.js";
import { SHA256_HEX } from "../../shared/hash.js";

/**
 * Content-addressed files under dataDir: `uploads/{sha256}` (raw operator uploads) and
 * `bundles/{sha256}` (built bundles). Every file is written to `tmp/`, fsynced, then renamed,
 * so a crash never leaves a half-written file under its final name.
 */
export interface BlobStore {
  tmpDir: string;
  receiveUpload(body: Readable, maxBytes: number, declaredLength?: number): Promise<{ sha256: string; size: number }>;
  uploadPath(sha256: string): Promise<string>;
  /** Moves a finished temp file into `bundles/` under its hash. */
  commitBundle(tmpPath: string, sha256: string): Promise<string>;
  bundlePath(sha256: string): string;
  bundleExists(sha256: string): Promise<boolean>;
  makeTempDir(prefix: string): Promise<string>;
  /** `pending/{id}/`: the payload of a release waiting for offline signatures. */
  pendingPath(id: string): string;
  /** Moves a prepared temp directory into `pending/` under `id`. */
  commitPending(tmpDir: string, id: string): Promise<string>;
  removePending(id: string): Promise<void>;
}

export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export async function createBlobStore(dataDir: string): Promise<BlobStore> {
  const uploadsDir = join(dataDir, "uploads");
  const bundlesDir = join(dataDir, "bundles");
  const tmpDir = join(dataDir, "tmp");
  const pendingDir = join(dataDir, "pending");
  await Promise.all([uploadsDir, bundlesDir, tmpDir, pendingDir].map((d) => mkdir(d, { recursive: true })));
  // Leftovers of a crash mid-upload are garbage by construction (never renamed into place).
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir, { recursive: true });

  const assertSha = (sha: string) => {
    if (!SHA256_HEX.test(sha)) throw new EdgeFleetError("VALIDATION_FAILED", "sha256 must be 64 lowercase hex");
  };

  return {
    tmpDir,
    async receiveUpload(body, maxBytes, declaredLength) {
      if (declaredLength !== undefined && declaredLength > maxBytes) {
        body.resume(); // drain so the connection can carry the error reply
        throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `upload of ${declaredLength} bytes exceeds ${maxBytes} bytes`);
      }
      const tmp = join(tmpDir, `upload-${randomBytes(8).toString("hex")}`);
      const hash = createHash("sha256");
      let size = 0;
      let tooLarge = false;
      try {
        await pipeline(
          body,
          async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              size += chunk.length;
              if (size > maxBytes) {
                tooLarge = true;
                throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `upload exceeds ${maxBytes} bytes`);
              }
              hash.update(chunk);
              yield chunk;
            }
          },
          createWriteStream(tmp, { mode: 0o600 }),
        );
      } catch (err) {
        await rm(tmp, { force: true });
        if (tooLarge) throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `upload exceeds ${maxBytes} bytes`);
        throw new EdgeFleetError("BAD_REQUEST", `upload interrupted: ${(err as Error).message}`);
      }
      if (size === 0) {
        await rm(tmp, { force: true });
        throw new EdgeFleetError("VALIDATION_FAILED", "upload body is empty");
      }
      const sha256 = hash.digest("hex");
      await fsyncFile(tmp);
      await rename(tmp, join(uploadsDir, sha256));
      return { sha256, size };
    },
    async uploadPath(sha256) {
      assertSha(sha256);
      const p = join(uploadsDir, sha256);
      if (!(await exists(p))) throw new EdgeFleetError("NOT_FOUND", `upload ${sha256} not found`);
      return p;
    },
    async commitBundle(tmpPath, sha256) {
      assertSha(sha256);
      await fsyncFile(tmpPath);
      const dest = join(bundlesDir, sha256);
      await rename(tmpPath, dest);
      return dest;
    },
    bundlePath(sha256) {
      assertSha(sha256);
      return join(bundlesDir, sha256);
    },
    async bundleExists(sha256) {
      return SHA256_HEX.test(sha256) && exists(join(bundlesDir, sha256));
    },
    makeTempDir(prefix) {
      return mkdtemp(join(tmpDir, `${prefix}-`));
    },
    pendingPath(id) {
      assertSha(id);
      return join(pendingDir, id);
    },
    async commitPending(dir, id) {
      assertSha(id);
      const dest = join(pendingDir, id);
      await rename(dir, dest);
      return dest;
    },
    async removePending(id) {
      assertSha(id);
      await rm(join(pendingDir, id), { recursive: true, force: true });
    },
  };
}
