import { createHash } from "node:crypto";
import type { RawTensor } from "../../shared/tensors.js";

/**
 * Optional LRU response cache (issue 8). Keyed by the *bundle hash* of the version that answers and
 * the exact input bytes, so a swap can never serve the previous version's answer, and two versions
 * never share entries. Bounded by entries and bytes.
 */
export function cacheKey(sha256: string, inputs: Record<string, RawTensor>, outputs?: readonly string[]): string {
  const h = createHash("sha256").update(sha256);
  for (const name of Object.keys(inputs).sort()) {
    const t = inputs[name]!;
    h.update(`\0${name}\0${t.type}\0${t.dims.join(",")}\0`);
    if (Array.isArray(t.data)) {
      for (const s of t.data) {
        const b = Buffer.from(s, "utf8");
        const len = Buffer.alloc(4);
        len.writeUInt32LE(b.length);
        h.update(len).update(b);
      }
    } else h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  h.update(`\0>${outputs ? [...outputs].sort().join(",") : "*"}`);
  return h.digest("hex");
}

export function rawBytes(outputs: Record<string, RawTensor>): number {
  let n = 0;
  for (const t of Object.values(outputs)) {
    n += Array.isArray(t.data) ? t.data.reduce((a, s) => a + s.length + 4, 0) : t.data.byteLength;
  }
  return n;
}

export interface LruCache<V> {
  get(key: string): V | undefined;
  set(key: string, value: V, bytes: number): void;
  stats(): { entries: number; bytes: number; hits: number; misses: number };
}

/** Map iteration order is insertion order: re-inserting on hit makes the first key the least recent. */
export function createLruCache<V>(limits: { maxEntries: number; maxBytes: number }): LruCache<V> {
  const map = new Map<string, { value: V; bytes: number }>();
  let bytes = 0;
  let hits = 0;
  let misses = 0;
  return {
    get(key) {
      const e = map.get(key);
      if (!e) {
        misses++;
        return undefined;
      }
      hits++;
      map.delete(key);
      map.set(key, e);
      return e.value;
    },
    set(key, value, size) {
      if (size > limits.maxBytes) return; // never evict everything for one huge answer
      const old = map.get(key);
      if (old) {
        bytes -= old.bytes;
        map.delete(key);
      }
      map.set(key, { value, bytes: size });
      bytes += size;
      while (map.size > limits.maxEntries || bytes > limits.maxBytes) {
        const [k, e] = map.entries().next().value as [string, { bytes: number }];
        map.delete(k);
        bytes -= e.bytes;
      }
    },
    stats: () => ({ entries: map.size, bytes, hits, misses }),
  };
}
