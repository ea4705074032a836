import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * KServe v2 / Triton system shared-memory regions (issue 13, docs/protocol.md "Shared memory").
 *
 * A local app creates a POSIX shared-memory object (`shm_open("/key")`, i.e. the file /dev/shm/key),
 * registers a window of it under a name, and then names that region in infer requests instead of
 * sending tensor bytes over the socket.
 *
 * Ownership (the security rule): a region belongs to the uid that registered it, as the kernel
 * reports it for the socket (SO_PEERCRED, peer-credentials.ts). Registration opens the object
 * without following links and accepts it only if the file is owned by that same uid, so a process
 * cannot make the agent read or write another user's memory by naming it. Names live in a per-uid
 * namespace: another uid neither sees a region in status nor can use or unregister it.
 *
 * Invariant: the registry keeps the descriptor it opened at registration and does all I/O through
 * it, so replacing /dev/shm/key after registration cannot redirect the agent to another file. Every
 * read and write is bounds-checked against the registered window and against the object's current
 * size (a region may be truncated by its owner after registration): out of bounds is a 400, never a
 * short read passed on as a tensor.
 *
 * I/O is synchronous on purpose: /dev/shm is tmpfs (memory), a read is a memcpy of at most the
 * tensor, and going through libuv's thread pool would cost more than it saves.
 */
export interface RegionSpec {
  key: string;
  offset: number;
  byteSize: number;
}

export interface RegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

interface Region extends RegionSpec {
  name: string;
  fd: number;
}

export interface ShmRegistryOptions {
  /** Where shm_open puts objects; /dev/shm on Linux (tests may point elsewhere on tmpfs). */
  dir?: string;
  /** Regions one uid may hold at once (each holds a descriptor). */
  maxRegionsPerUid?: number;
}

/** A key as Triton clients pass it to shm_open: "/name" or "name", one path component. */
const KEY = /^\/?([A-Za-z0-9][A-Za-z0-9._-]{0,254})$/;

const bad = (msg: string) => new EdgeFleetError("BAD_REQUEST", msg);

export class ShmRegistry {
  private readonly byUid = new Map<number, Map<string, Region>>();
  private readonly dir: string;
  private readonly maxPerUid: number;

  constructor(opts: ShmRegistryOptions = {}) {
    this.dir = opts.dir ?? "/dev/shm";
    this.maxPerUid = opts.maxRegionsPerUid ?? 64;
  }

  /** True when no caller holds a region (then an infer request needs no caller lookup at all). */
  get empty(): boolean {
    return this.byUid.size === 0;
  }

  register(uid: number, name: string, spec: RegionSpec): void {
    const mine = this.byUid.get(uid) ?? new Map<string, Region>();
    if (mine.has(name)) throw bad(`shared memory region "${name}" is already registered`);
    if (mine.size >= this.maxPerUid)
      throw bad(`at most ${this.maxPerUid} shared memory regions per user; unregister one first`);
    const m = KEY.exec(spec.key);
    if (!m) throw bad(`shared memory key "${spec.key}" is not a shm_open name ("/name", letters, digits, . _ -)`);
    const path = join(this.dir, m[1]!);
    let fd: number;
    try {
      // libuv adds O_CLOEXEC itself: model hosts and other children never inherit a region.
      fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw bad(`shared memory key "${spec.key}" does not exist`);
      if (code === "ELOOP") throw bad(`shared memory key "${spec.key}" is a symbolic link`);
      throw new EdgeFleetError("FORBIDDEN", `shared memory key "${spec.key}" cannot be opened (${code ?? "error"})`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw bad(`shared memory key "${spec.key}" is not a shared memory object`);
      if (st.uid !== uid)
        throw new EdgeFleetError("FORBIDDEN", `shared memory key "${spec.key}" belongs to another user`);
      if (spec.offset + spec.byteSize > st.size)
        throw bad(
          `shared memory region "${name}": offset ${spec.offset} + byte_size ${spec.byteSize} exceeds the object's ${st.size} bytes`,
        );
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    mine.set(name, { ...spec, name, fd });
    this.byUid.set(uid, mine);
  }

  /** Unregisters one region (name given) or all of the caller's. Unknown names are a 400 as in Triton. */
  unregister(uid: number, name?: string): void {
    const mine = this.byUid.get(uid);
    if (name === undefined) {
      for (const r of mine?.values() ?? []) closeSync(r.fd);
      this.byUid.delete(uid);
      return;
    }
    const r = mine?.get(name);
    if (!r) throw bad(`unable to find shared memory region "${name}"`);
    closeSync(r.fd);
    mine!.delete(name);
    if (mine!.size === 0) this.byUid.delete(uid);
  }

  status(uid: number, name?: string): RegionStatus[] {
    const mine = [...(this.byUid.get(uid)?.values() ?? [])];
    const list = name === undefined ? mine : mine.filter((r) => r.name === name);
    if (name !== undefined && list.length === 0) throw bad(`unable to find shared memory region "${name}"`);
    return list.map((r) => ({ name: r.name, key: r.key, offset: r.offset, byte_size: r.byteSize }));
  }

  /** Throws BAD_REQUEST unless the caller has region `name` and `[offset, offset + size)` lies inside it. */
  check(uid: number, where: string, name: string, offset: number, size: number): void {
    this.window(uid, where, name, offset, size);
  }

  /** The region and the absolute file position of `[offset, offset + size)` inside it, bounds-checked. */
  private window(uid: number, where: string, name: string, offset: number, size: number): { r: Region; pos: number } {
    const r = this.byUid.get(uid)?.get(name);
    if (!r) throw bad(`${where}: unable to find shared memory region "${name}"`);
    if (offset + size > r.byteSize)
      throw bad(
        `${where}: shared_memory_offset ${offset} + ${size} bytes exceeds region "${name}" (${r.byteSize} bytes)`,
      );
    const pos = r.offset + offset;
    const actual = fstatSync(r.fd).size;
    if (pos + size > actual) throw bad(`${where}: region "${name}" was truncated to ${actual} bytes by its owner`);
    return { r, pos };
  }

  /**
   * `size` bytes of a region into a fresh 8-aligned buffer (typed-array views over it are aligned).
   * Throws BAD_REQUEST for an unknown region or a window outside it.
   */
  read(uid: number, where: string, name: string, offset: number, size: number): Buffer {
    const { r, pos } = this.window(uid, where, name, offset, size);
    const out = Buffer.allocUnsafeSlow(size);
    let done = 0;
    while (done < size) {
      const n = readSync(r.fd, out, done, size - done, pos + done);
      if (n === 0) throw bad(`${where}: region "${name}" ended early`);
      done += n;
    }
    return out;
  }

  /** Writes `bytes` into a region at `offset`; refuses (400) when they do not fit. */
  write(uid: number, where: string, name: string, offset: number, capacity: number, bytes: Uint8Array): void {
    if (bytes.byteLength > capacity)
      throw bad(`${where}: output is ${bytes.byteLength} bytes, shared_memory_byte_size is ${capacity}`);
    const { r, pos } = this.window(uid, where, name, offset, bytes.byteLength);
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(r.fd, bytes, done, bytes.byteLength - done, pos + done);
  }

  /** Closes every descriptor (agent shutdown). */
  close(): void {
    for (const uid of [...this.byUid.keys()]) this.unregister(uid);
  }
}
