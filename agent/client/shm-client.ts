import { closeSync, constants, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { inferPath, type SocketClient, type V2InferResponse } from "./socket-client.js";

/**
 * Client side of the shared-memory extension (issue 13, docs/protocol.md "Shared memory"): create a
 * POSIX shared-memory object, register it with the agent, and infer with tensors that stay in it.
 * Node cannot map memory, so this client reads and writes the object through a file descriptor
 * (tmpfs: a memcpy); a C or Python client maps it (`multiprocessing.shared_memory`) and copies nothing.
 */
export class SharedMemoryObject {
  private constructor(
    readonly key: string,
    readonly path: string,
    readonly byteSize: number,
    private fd: number,
  ) {}

  /**
   * `shm_open(key, O_CREAT | O_EXCL | O_RDWR, 0600)` + `ftruncate`: a new object only this user can
   * open (the agent accepts a region only from the uid that owns its object).
   */
  static create(key: string, byteSize: number, dir = "/dev/shm"): SharedMemoryObject {
    const name = key.replace(/^\//, "");
    const path = join(dir, name);
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    ftruncateSync(fd, byteSize);
    return new SharedMemoryObject(`/${name}`, path, byteSize, fd);
  }

  write(offset: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, offset + done);
  }

  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return out.subarray(0, done);
  }

  /** Closes and removes the object (`shm_unlink`); the agent's registration keeps its own descriptor. */
  destroy(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

export interface RegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

/** A tensor that lives in a registered region: `byteSize` bytes at `offset` of region `region`. */
export interface RegionTensor {
  name: string;
  region: string;
  byteSize: number;
  offset?: number;
}

export interface RegionInput extends RegionTensor {
  datatype: string;
  shape: number[];
}

const enc = encodeURIComponent;

export function registerRegion(
  client: SocketClient,
  name: string,
  region: { key: string; byteSize: number; offset?: number },
): Promise<unknown> {
  return client.json("POST", `/v2/systemsharedmemory/region/${enc(name)}/register`, {
    key: region.key,
    offset: region.offset ?? 0,
    byte_size: region.byteSize,
  });
}

/** Unregisters one region, or every region of the caller when `name` is omitted. */
export function unregisterRegion(client: SocketClient, name?: string): Promise<unknown> {
  const path =
    name === undefined ? "/v2/systemsharedmemory/unregister" : `/v2/systemsharedmemory/region/${enc(name)}/unregister`;
  return client.json("POST", path);
}

export function regionStatus(client: SocketClient, name?: string): Promise<RegionStatus[]> {
  const path =
    name === undefined ? "/v2/systemsharedmemory/status" : `/v2/systemsharedmemory/region/${enc(name)}/status`;
  return client.json("GET", path);
}

const params = (t: RegionTensor) => ({
  shared_memory_region: t.region,
  shared_memory_byte_size: t.byteSize,
  ...(t.offset !== undefined ? { shared_memory_offset: t.offset } : {}),
});

/**
 * Infer with inputs read from regions and outputs written into regions: the request and the answer
 * carry only names, shapes and sizes. Outputs not listed come back as JSON data as usual.
 */
export function inferShared(
  client: SocketClient,
  model: string,
  inputs: RegionInput[],
  outputs: RegionTensor[],
  opts: { version?: string; id?: string } = {},
): Promise<V2InferResponse> {
  const body: Record<string, unknown> = {
    inputs: inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape, parameters: params(i) })),
    outputs: outputs.map((o) => ({ name: o.name, parameters: params(o) })),
  };
  if (opts.id !== undefined) body.id = opts.id;
  return client.json("POST", inferPath(model, opts.version), body);
}
