import { chmod, chown, lstat, mkdir, readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";

/**
 * The socket's directory (issue 7): 0750, owned by the agent's user and a configurable group, so
 * local apps reach the 0660 socket by group membership and nobody else can even traverse to it.
 */

export const SOCKET_DIR_MODE = 0o750;

/** The gid for `group` (a gid, a numeric string, or a name looked up in `/etc/group` text). Pure. */
export function resolveGroup(group: string | number, etcGroup: string): number {
  if (typeof group === "number") return group;
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of etcGroup.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new EdgeFleetError("VALIDATION_FAILED", `socketGroup ${JSON.stringify(group)}: no such group in /etc/group`);
}

/** What to do with the directory, decided from its stat and our identity. Pure. */
export type DirPlan = { kind: "restrict" } | { kind: "leave"; reason: string };

export function planSocketDir(input: {
  dir: string;
  dataDir: string;
  isDirectory: boolean;
  isSymlink: boolean;
  mode: number;
  ownerUid: number;
  uid: number | null;
}): DirPlan {
  if (resolve(input.dir) === resolve(input.dataDir)) {
    return { kind: "leave", reason: "the socket is in the data dir, which stays 0700 (set socketPath elsewhere)" };
  }
  if (input.isSymlink || !input.isDirectory) return { kind: "leave", reason: "not a plain directory" };
  if ((input.mode & 0o1000) !== 0) return { kind: "leave", reason: "shared sticky directory (like /tmp)" };
  if (input.uid !== null && input.ownerUid !== input.uid) {
    return { kind: "leave", reason: "directory owned by another user" };
  }
  return { kind: "restrict" };
}

export interface PrepareSocketDirOptions {
  socketPath: string;
  dataDir: string;
  group?: string | number;
  log: Logger;
}

/**
 * Creates the socket's directory (0750), restricts a directory the agent owns to 0750, and sets its
 * group when `group` is configured: as root always; otherwise only for a group the agent belongs to
 * (what chown allows an unprivileged owner), else the group is left alone and the reason logged.
 */
export async function prepareSocketDir(o: PrepareSocketDirOptions): Promise<void> {
  const dir = dirname(resolve(o.socketPath));
  await mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  const st = await lstat(dir);
  const uid = process.getuid?.() ?? null;
  const plan = planSocketDir({
    dir,
    dataDir: o.dataDir,
    isDirectory: st.isDirectory(),
    isSymlink: st.isSymbolicLink(),
    mode: st.mode,
    ownerUid: st.uid,
    uid,
  });
  if (plan.kind === "leave") {
    o.log[o.group === undefined ? "debug" : "warn"]({ dir, reason: plan.reason }, "socket directory left unchanged");
    return;
  }
  await chmod(dir, SOCKET_DIR_MODE);
  if (o.group === undefined) return;
  const etcGroup = typeof o.group === "string" ? await readFile("/etc/group", "utf8").catch(() => "") : "";
  const gid = resolveGroup(o.group, etcGroup);
  const member = uid === 0 || (process.getgroups?.() ?? []).includes(gid) || process.getgid?.() === gid;
  if (!member) {
    o.log.warn({ dir, gid }, "socketGroup not applied: the agent is neither root nor a member of that group");
    return;
  }
  await chown(dir, st.uid, gid);
  o.log.info({ dir, gid }, "socket directory group set");
}
