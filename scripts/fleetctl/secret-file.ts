import { open, unlink } from "node:fs/promises";
import { ApiError } from "./api-client.js";

/**
 * Writes a secret the server shows once (a device's MQTT password) to a new file readable by its
 * owner only. The file is created first (`wx`: an existing file is refused, never overwritten),
 * then `produce` runs; if it fails the empty file is removed, so a retry finds the path free.
 */
export async function writeSecretFile<R>(
  path: string,
  produce: () => Promise<{ value: string; result: R }>,
): Promise<R> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "wx", 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" ? "it already exists (refusing to overwrite a secret)" : (err as Error).message;
    throw new ApiError(0, "BAD_REQUEST", `--password-file ${path}: ${why}`);
  }
  try {
    // The umask can only remove bits, but a parent directory's default ACL could add some.
    await handle.chmod(0o600);
    const { value, result } = await produce();
    await handle.writeFile(`${value}\n`, "utf8");
    return result;
  } catch (err) {
    await handle.close();
    await unlink(path).catch(() => {});
    throw err;
  } finally {
    await handle.close().catch(() => {});
  }
}
