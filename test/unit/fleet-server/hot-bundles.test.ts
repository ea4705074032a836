import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHotBundles } from "../../../fleet-server/bundles/hot-bundles.js";
import { createFakeClock } from "../../../shared/clock.js";
import { sha256Hex } from "../../../shared/hash.js";
import { createLogger } from "../../../shared/logger.js";

/** Bundles kept ready for chunk serving (issue 17): verified once, bounded, refused when damaged. */
const log = createLogger({ name: "test", level: "silent", pretty: false });
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ef-hot-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function stored(bytes: Buffer, name = sha256Hex(bytes)): Promise<string> {
  await writeFile(join(dir, name), bytes);
  return name;
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "resolved",
    (e: { code?: string }) => e.code,
  );

describe("hot bundles", () => {
  it("serves from memory after one verified read; the file is not read again per request", async () => {
    const bytes = randomBytes(300_000);
    const sha = await stored(bytes);
    const hot = createHotBundles({ path: (s) => join(dir, s), clock: createFakeClock(), log, maxBytes: 1_000_000 });
    const b = await hot.get(sha);
    expect(b.size).toBe(bytes.length);
    expect((await b.read(100_000, 1000)).equals(bytes.subarray(100_000, 101_000))).toBe(true);
    expect((await b.read(bytes.length - 10, 1000)).length).toBe(10);
    expect(hot.heldBytes()).toBe(bytes.length);
    await writeFile(join(dir, sha), Buffer.alloc(bytes.length)); // not re-read per request
    expect((await (await hot.get(sha)).read(0, 16)).equals(bytes.subarray(0, 16))).toBe(true);
    await hot.close();
  });

  it("serves a bundle over half the memory budget from its open file, verified the same way", async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const sha = await stored(bytes);
    const hot = createHotBundles({ path: (s) => join(dir, s), clock: createFakeClock(), log, maxBytes: 1_000_000 });
    const b = await hot.get(sha);
    expect(hot.heldBytes()).toBe(0);
    expect(
      (await b.read(2 * 1024 * 1024, 65536)).equals(bytes.subarray(2 * 1024 * 1024, 2 * 1024 * 1024 + 65536)),
    ).toBe(true);
    const damaged = Buffer.from(bytes);
    damaged.writeUInt8(damaged.readUInt8(3_000_000) ^ 1, 3_000_000);
    // Another name than the genuine one (one sha in 16 starts with "0": the same name made this flaky).
    const genuine = sha256Hex(bytes);
    const bad = await stored(damaged, `${genuine.startsWith("0") ? "1" : "0"}${genuine.slice(1)}`);
    expect(await codeOf(hot.get(bad))).toBe("BUNDLE_HASH_MISMATCH");
    await hot.close();
  });

  it("keeps memory within its budget, dropping the least recently used", async () => {
    const a = await stored(randomBytes(400_000));
    const b = await stored(randomBytes(400_000));
    const c = await stored(randomBytes(400_000));
    const clock = createFakeClock();
    const hot = createHotBundles({ path: (s) => join(dir, s), clock, log, maxBytes: 1_000_000 });
    await hot.get(a);
    clock.advance(1);
    await hot.get(b);
    clock.advance(1);
    await hot.get(a); // a is now more recent than b
    clock.advance(1);
    await hot.get(c); // b goes
    expect(hot.heldBytes()).toBe(800_000);
    // Which one went shows when the files change under them: a is still served, b is read again.
    await writeFile(join(dir, a), Buffer.alloc(400_000));
    await writeFile(join(dir, b), Buffer.alloc(400_000));
    expect(await codeOf(hot.get(a))).toBe("resolved");
    expect(await codeOf(hot.get(b))).toBe("BUNDLE_HASH_MISMATCH");
    clock.advance(30_001); // idle: all go
    expect(hot.heldBytes()).toBe(0);
    await hot.close();
  });

  it("follows the store within a second: a removed bundle is NOT_FOUND, a replaced one is verified anew", async () => {
    const bytes = randomBytes(200_000);
    const sha = await stored(bytes);
    const clock = createFakeClock();
    const hot = createHotBundles({ path: (s) => join(dir, s), clock, log });
    await hot.get(sha);
    await rm(join(dir, sha));
    expect(await codeOf(hot.get(sha))).toBe("resolved"); // checked at most once a second
    clock.advance(1001);
    expect(await codeOf(hot.get(sha))).toBe("NOT_FOUND");
    await stored(bytes);
    expect(await codeOf(hot.get(sha))).toBe("resolved");
    clock.advance(1001);
    await writeFile(join(dir, sha), Buffer.concat([bytes, Buffer.from("tail")])); // damaged in place
    expect(await codeOf(hot.get(sha))).toBe("BUNDLE_HASH_MISMATCH");
    await hot.close();
  });

  it("refuses a damaged bundle and remembers the refusal; a missing one is looked for again", async () => {
    const bytes = randomBytes(50_000);
    const name = sha256Hex(Buffer.from("something else"));
    await stored(bytes, name);
    const hot = createHotBundles({ path: (s) => join(dir, s), clock: createFakeClock(), log });
    expect(await codeOf(hot.get(name))).toBe("BUNDLE_HASH_MISMATCH");
    await writeFile(join(dir, name), Buffer.from("something else")); // repaired, but the refusal holds for idleMs
    expect(await codeOf(hot.get(name))).toBe("BUNDLE_HASH_MISMATCH");
    const later = sha256Hex(Buffer.from("later"));
    expect(await codeOf(hot.get(later))).toBe("NOT_FOUND");
    await stored(Buffer.from("later"));
    expect(await codeOf(hot.get(later))).toBe("resolved");
    await hot.close();
  });
});
