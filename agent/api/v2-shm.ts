import { EdgeFleetError } from "../../shared/errors.js";
import type { ShmRegistry } from "./shm-regions.js";

/**
 * The shared-memory parameters of the Open Inference Protocol (Triton's system shared-memory
 * extension, issue 13): an input or output names `shared_memory_region` (a name the caller
 * registered), `shared_memory_byte_size` (required) and `shared_memory_offset` (default 0). Inputs
 * are read from the region; outputs are written into it and answered without data.
 */
export interface RegionAccess {
  /** The bytes of `[offset, offset + size)` of the caller's region `name`. */
  read(where: string, name: string, offset: number, size: number): Buffer;
  /** Throws unless `[offset, offset + size)` lies inside the caller's region `name`. */
  check(where: string, name: string, offset: number, size: number): void;
  write(where: string, name: string, offset: number, capacity: number, bytes: Uint8Array): void;
}

export interface OutputRegion {
  region: string;
  offset: number;
  byteSize: number;
}

const unknownRegion = (where: string, name: string) =>
  new EdgeFleetError("BAD_REQUEST", `${where}: unable to find shared memory region "${name}"`);

/** For callers with no known uid: every region is unknown (never someone else's). */
export const NO_REGIONS: RegionAccess = {
  read: (where, name) => {
    throw unknownRegion(where, name);
  },
  check: (where, name) => {
    throw unknownRegion(where, name);
  },
  write: (where, name) => {
    throw unknownRegion(where, name);
  },
};

/** `registry` seen as the regions of one uid. */
export function regionsOf(registry: ShmRegistry, uid: number): RegionAccess {
  return {
    read: (where, name, offset, size) => registry.read(uid, where, name, offset, size),
    check: (where, name, offset, size) => registry.check(uid, where, name, offset, size),
    write: (where, name, offset, capacity, bytes) => registry.write(uid, where, name, offset, capacity, bytes),
  };
}

interface Params {
  name: string;
  parameters?: Record<string, unknown> | undefined;
}

/** The region parameters of one input or output, or null when it names no region. Checks their combination. */
function regionParams(where: string, p: Params): OutputRegion | null {
  const params = p.parameters;
  const region = params?.shared_memory_region;
  if (region === undefined) {
    if (params?.shared_memory_byte_size !== undefined || params?.shared_memory_offset !== undefined)
      throw new EdgeFleetError("BAD_REQUEST", `${where}: shared_memory_byte_size/offset without shared_memory_region`);
    return null;
  }
  const byteSize = params?.shared_memory_byte_size;
  if (typeof byteSize !== "number")
    throw new EdgeFleetError("BAD_REQUEST", `${where}: shared_memory_region needs shared_memory_byte_size`);
  const offset = params?.shared_memory_offset ?? 0;
  return { region: String(region), offset: offset as number, byteSize };
}

/** An input's bytes from its region, or null when it names none. Refuses data/binary alongside a region. */
export function inputRegion(input: Params & { data?: unknown }, regions: RegionAccess): Buffer | null {
  const where = `input "${input.name}"`;
  const r = regionParams(where, input);
  if (!r) return null;
  if (input.data !== undefined || input.parameters?.binary_data_size !== undefined)
    throw new EdgeFleetError("BAD_REQUEST", `${where} has shared_memory_region and also data or binary_data_size`);
  return regions.read(where, r.region, r.offset, r.byteSize);
}

/** An output's region, checked to exist and to hold its window, or null when it names none. */
export function outputRegion(output: Params, regions: RegionAccess): OutputRegion | null {
  const where = `output "${output.name}"`;
  const r = regionParams(where, output);
  if (!r) return null;
  if (output.parameters?.binary_data !== undefined)
    throw new EdgeFleetError("BAD_REQUEST", `${where} has shared_memory_region and also binary_data`);
  regions.check(where, r.region, r.offset, r.byteSize);
  return r;
}
