import { describe, expect, it } from "vitest";
import { createCredentialCache } from "../../../fleet-server/devices/credential-cache.js";
import { createFakeClock } from "../../../shared/clock.js";

describe("device credential cache", () => {
  it("hits only for the same password and stored hash, within the TTL", () => {
    const clock = createFakeClock(1_000);
    const cache = createCredentialCache({ now: clock.now, ttlMs: 60_000 });
    expect(cache.hit("d1", "pw", "hash-a")).toBe(false);
    cache.remember("d1", "pw", "hash-a");
    expect(cache.hit("d1", "pw", "hash-a")).toBe(true);
    expect(cache.hit("d1", "other", "hash-a")).toBe(false);
    // A rotated password (new stored hash) never matches the cached entry.
    expect(cache.hit("d1", "pw", "hash-b")).toBe(false);
    expect(cache.hit("d2", "pw", "hash-a")).toBe(false);
    clock.advance(60_000);
    expect(cache.hit("d1", "pw", "hash-a")).toBe(false);
  });

  it("forgets on demand and evicts the oldest entry when full", () => {
    const clock = createFakeClock(0);
    const cache = createCredentialCache({ now: clock.now, maxEntries: 2 });
    cache.remember("a", "1", "h");
    cache.remember("b", "2", "h");
    cache.remember("c", "3", "h");
    expect(cache.hit("a", "1", "h")).toBe(false);
    expect(cache.hit("b", "2", "h")).toBe(true);
    cache.forget("b");
    expect(cache.hit("b", "2", "h")).toBe(false);
    expect(cache.hit("c", "3", "h")).toBe(true);
  });
});
