import { execFile } from "node:child_process";
import { mkdir, open, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Real storage faults for tests (issue 20 §2): a small tmpfs that can be filled, freed and made
 * read-only. Mounting needs root (CI runs as root); without it the tests that need it are skipped
 * with `TMPFS_SKIP_REASON`, and the fault-injection tests through the store interfaces still run.
 */
export const canMountTmpfs = process.platform === "linux" && process.getuid?.() === 0;
export const TMPFS_SKIP_REASON =
  "needs root to mount a tmpfs (CI runs as root): real disk-full / read-only cases skipped";

export interface Tmpfs {
  path: string;
  freeBytes(): Promise<number>;
  /** Writes a filler file until only about `leaveBytes` are free (0: until ENOSPC). */
  fill(leaveBytes?: number): Promise<void>;
  /** Deletes the filler: the space returns. */
  free(): Promise<void>;
  /** New opens, creates and renames fail with EROFS from now on (a read-only bind mount on top). */
  readOnly(): Promise<void>;
  readWrite(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(path: string, sizeBytes: number): Promise<Tmpfs> {
  await mkdir(path, { recursive: true });
  await run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes},mode=0700`, "tmpfs", path]);
  const filler = join(path, ".filler");
  let mounted = true;
  let readOnlyBind = false;
  const t: Tmpfs = {
    path,
    async freeBytes() {
      const s = await statfs(path);
      return Number(s.bavail) * Number(s.bsize);
    },
    async fill(leaveBytes = 0) {
      const fh = await open(filler, "a");
      try {
        const block = Buffer.alloc(64 * 1024);
        for (;;) {
          const free = await t.freeBytes();
          const room = free - leaveBytes;
          if (room <= 0) return;
          const n = Math.min(block.length, room);
          try {
            await fh.write(block, 0, n);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENOSPC") return;
            throw err;
          }
        }
      } finally {
        await fh.close();
      }
    },
    free: () => rm(filler, { force: true }),
    // A read-only bind mount over the tmpfs, as in the reproduction: a plain `remount,ro`
    // is refused while the agent holds files open for writing; the bind turns every new open,
    // create and rename read-only (EROFS) at once, while handles opened before keep their mount.
    async readOnly() {
      if (readOnlyBind) return;
      await run("mount", ["--bind", path, path]);
      readOnlyBind = true;
      await run("mount", ["-o", "remount,bind,ro", path]);
    },
    async readWrite() {
      if (!readOnlyBind) return;
      // Lazy: files the agent opened through the read-only bind keep it; every new open sees the tmpfs.
      await run("umount", ["-l", path]);
      readOnlyBind = false;
    },
    async unmount() {
      if (!mounted) return;
      mounted = false;
      if (readOnlyBind) await run("umount", ["-l", path]).catch(() => undefined);
      readOnlyBind = false;
      await run("umount", ["-l", path]).catch(() => undefined);
    },
  };
  return t;
}
