import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Remembers, for a short time, that a device's password checked out, so a device pulling a bundle
 * over HTTP in Range requests does not pay a full scrypt (~35 ms here) per request (measured in
 * `npm run bench -- bundle-delivery`). Safe because device passwords are 32 random bytes: their
 * SHA-256 in memory reveals nothing a brute force could use. An entry is tied to the stored hash,
 * so a rotated password never matches a cached one; revocation is checked before the cache.
 * Bounded: the oldest entry goes when full (Map keeps insertion order).
 */
export interface CredentialCache {
  /** True when (id, password) was verified recently against this same stored hash. */
  hit(id: string, password: string, storedHash: string): boolean;
  remember(id: string, password: string, storedHash: string): void;
  forget(id: string): void;
}

const digest = (password: string, storedHash: string): Buffer =>
  createHash("sha256").update(storedHash).update("\0").update(password).digest();

export function createCredentialCache(opts: {
  now: () => number;
  ttlMs?: number;
  maxEntries?: number;
}): CredentialCache {
  const ttl = opts.ttlMs ?? 60_000;
  const max = opts.maxEntries ?? 50_000;
  const entries = new Map<string, { digest: Buffer; until: number }>();
  return {
    hit(id, password, storedHash) {
      const e = entries.get(id);
      if (!e) return false;
      if (e.until <= opts.now()) {
        entries.delete(id);
        return false;
      }
      return timingSafeEqual(e.digest, digest(password, storedHash));
    },
    remember(id, password, storedHash) {
      entries.delete(id);
      if (entries.size >= max) {
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) entries.delete(oldest);
      }
      entries.set(id, { digest: digest(password, storedHash), until: opts.now() + ttl });
    },
    forget(id) {
      entries.delete(id);
    },
  };
}
