import type { FileHandle } from "node:fs/promises";

/**
 * Writes all of `bytes` at `position`. `FileHandle.write` may write fewer bytes than asked without
 * an error (a disk that fills mid-write does exactly that, issue 20 §2); the rest is written again,
 * so the next call reports the fault (ENOSPC) instead of a silent hole in the file.
 */
export async function writeFully(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten <= 0) throw Object.assign(new Error("write made no progress"), { code: "EIO", syscall: "write" });
    done += bytesWritten;
  }
}
