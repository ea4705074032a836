import { createRequire } from "node:module";
import type { Socket } from "node:net";

/**
 * Who is at the other end of a Unix-socket connection: the uid the kernel recorded at connect(2)
 * (SO_PEERCRED), through the one-function addon in agent/native/peer-credentials (built by `npm ci`).
 * Node has no socket-option API. The shared-memory extension binds each region to this uid
 * (docs/protocol.md "Shared memory", issue 13), so the answer must come from the kernel, never from
 * anything the client sends.
 */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

interface Addon {
  peerCredentials(fd: number): PeerCredentials;
}

let addon: Addon | null | undefined;

/** The addon, or null when it was not built on this machine (then shared memory is refused, not guessed). */
function load(): Addon | null {
  if (addon !== undefined) return addon;
  try {
    const require = createRequire(import.meta.url);
    addon = require("../native/peer-credentials/build/Release/peer_credentials.node") as Addon;
  } catch {
    addon = null;
  }
  return addon;
}

export function peerCredentialsAvailable(): boolean {
  return load() !== null;
}

const cache = new WeakMap<Socket, PeerCredentials | null>();

/**
 * The peer of `socket`, or null when it cannot be known (no addon, not a Unix socket, already closed).
 * Credentials are fixed for a connection's life, so each socket is asked once.
 */
export function peerOf(socket: Socket): PeerCredentials | null {
  const known = cache.get(socket);
  if (known !== undefined) return known;
  const a = load();
  // libuv keeps the descriptor on the handle; there is no public accessor for it.
  const handle: unknown = Reflect.get(socket, "_handle");
  const fd = typeof handle === "object" && handle !== null ? Reflect.get(handle, "fd") : undefined;
  let creds: PeerCredentials | null = null;
  if (a && typeof fd === "number" && fd >= 0) {
    try {
      creds = a.peerCredentials(fd);
    } catch {
      creds = null;
    }
  }
  cache.set(socket, creds);
  return creds;
}
