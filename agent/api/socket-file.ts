import { chmod, lstat, unlink } from "node:fs/promises";
import net from "node:net";
import { EdgeFleetError } from "../../shared/errors.js";

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socketPath });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Removes a socket file left by a previous agent that died without cleaning up. Refuses when another
 * process still answers on it (two agents on one device) or when the path is not a socket at all
 * (never delete a user's regular file).
 */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new EdgeFleetError("CONFLICT", `${socketPath} exists and is not a socket`);
  if (await canConnect(socketPath))
    throw new EdgeFleetError("CONFLICT", `another process is listening on ${socketPath}`);
  await unlink(socketPath);
}

/** 0660: the agent's user and group (local apps are added to the group) — nobody else. */
export async function restrictSocket(socketPath: string): Promise<void> {
  await chmod(socketPath, 0o660);
}
