import { randomBytes } from "node:crypto";
import { mkdir, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeenEvent } from "./adversary.js";
import {
  buildValidBundle,
  type CraftOptions,
  craftBundle,
  entriesOf,
  type ServedBundle,
  sileroPayload,
  tampered,
} from "./bundles.js";
import {
  deviceStatus,
  expectUnchanged,
  findPaths,
  type SecuredDevice,
  startSecuredDevice,
  updateOutcome,
} from "./device.js";

/**
 * Attacks carried by the bundle bytes (architecture.md §2). The desired state and the manifest are validly
 * signed, so the device accepts the document and downloads the bundle; the attack must then be
 * caught before anything is installed: the update goes to `failed` with the specific code, the
 * committed 5.0.0 keeps serving, and nothing is written outside the agent's data dir.
 */
describe("security: the agent refuses malicious bundles", () => {
  let d: SecuredDevice;
  const RELEASE = { version: "6.0.0", releaseCounter: 3 };

  beforeAll(async () => {
    d = await startSecuredDevice("sec-bundles");
  });

  afterAll(async () => {
    await d?.close();
  });

  const payload = () => sileroPayload(d.silero);
  const entries = entriesOf;
  const craft = (o: Omit<CraftOptions, "release" | "signer">) =>
    craftBundle(d.silero, { release: RELEASE, signer: d.adv.keys.release, ...o });
  const unique = (prefix: string) => `${prefix}-${randomBytes(6).toString("hex")}.txt`;

  /**
   * Assigns `bundle` (serving `served` bytes under its id), waits for the update's outcome and
   * returns the failure event; the document itself must be accepted.
   */
  async function attack(bundle: ServedBundle, served: Buffer = bundle.bytes): Promise<SeenEvent> {
    d.adv.serve({ sha256: bundle.sha256, bytes: served });
    const doc = d.adv.desired([bundle]);
    const since = d.adv.events.length;
    await d.adv.publishDesired(doc);
    const outcome = await updateOutcome(d.adv, bundle.sha256, since);
    expect(outcome.to, `AGENT BUG: malicious bundle ended ${outcome.to}`).toBe("failed");
    expect(outcome.bundle).toBe(bundle.sha256);
    const status = await deviceStatus(d);
    expect(status.lastDesiredSeq).toBe(doc.signed.seq);
    expect(status.models[0]).toMatchObject({ state: "failed", candidate: { sha256: bundle.sha256 } });
    expect(d.adv.chunkRequests(bundle.sha256)).toBeGreaterThan(0);
    return outcome;
  }

  /** Nothing named `name` exists anywhere under the test's temp root (agent data dir included). */
  async function expectNowhere(name: string): Promise<void> {
    expect(await findPaths(d.adv.dir, (p) => basename(p) === name)).toEqual([]);
  }

  it("1. bundle bytes tampered after signing (served bytes ≠ signed SHA-256) → BUNDLE_HASH_MISMATCH", async () => {
    const bundle = await buildValidBundle(
      d.adv.dir,
      d.silero,
      { version: "5.0.1", releaseCounter: 3 },
      d.adv.keys.release,
    );
    const bad = tampered(bundle.bytes);
    expect(bad.length).toBe(bundle.size);
    const ev = await attack(bundle, bad);
    expect(ev.error?.code).toBe("BUNDLE_HASH_MISMATCH");
    await expectUnchanged(d);
    const downloads = await readdir(join(d.dataDir, "downloads"));
    expect(downloads.filter((f) => f.startsWith(bundle.sha256))).toEqual([]);
  });

  it("6. a manifest listing a file the archive lacks → BUNDLE_MISSING_FILE", async () => {
    const files = payload();
    const bundle = craft({ listed: files, entries: entries(files.filter((f) => f.path !== "samples.json")) });
    const ev = await attack(bundle);
    expect(ev.error?.code).toBe("BUNDLE_MISSING_FILE");
    expect(ev.error?.message).toMatch(/samples\.json/);
    await expectUnchanged(d);
  });

  it("7. an archive entry the manifest does not list → BUNDLE_UNLISTED_ENTRY", async () => {
    const files = payload();
    const [model, samples] = entries(files);
    const extra = unique("ef-unlisted");
    const bundle = craft({
      listed: files,
      entries: [model!, { name: extra, data: Buffer.from("#!/bin/sh\necho pwned\n") }, samples!],
    });
    const ev = await attack(bundle);
    expect(ev.error?.code).toBe("BUNDLE_UNLISTED_ENTRY");
    expect(ev.error?.message).toContain(extra);
    await expectUnchanged(d);
    await expectNowhere(extra);
  });

  it("8. a tar entry with ../ → BUNDLE_UNSAFE_ENTRY, nothing written outside the data dir", async () => {
    const files = payload();
    const name = unique("ef-escape");
    const entryName = `../../../${name}`;
    const bundle = craft({
      listed: files,
      entries: [...entries(files), { name: entryName, data: Buffer.from("escaped\n") }],
    });
    const ev = await attack(bundle);
    expect(ev.error?.code).toBe("BUNDLE_UNSAFE_ENTRY");
    expect(ev.error?.message).toContain(JSON.stringify(entryName));
    await expectUnchanged(d);
    // Where the entry would land if joined to a staging dir ({dataDir}/staging/stage-*): outside the data dir.
    const target = resolve(d.dataDir, "staging", "stage-x", entryName);
    expect(target.startsWith(`${d.dataDir}/`)).toBe(false);
    await expect(stat(target)).rejects.toMatchObject({ code: "ENOENT" });
    await expectNowhere(name);
  });

  it("9. a tar entry with an absolute path → BUNDLE_UNSAFE_ENTRY, nothing written there", async () => {
    const files = payload();
    const target = join(d.adv.dir, unique("ef-abs"));
    const bundle = craft({
      listed: files,
      entries: [...entries(files), { name: target, data: Buffer.from("absolute\n") }],
    });
    const ev = await attack(bundle);
    expect(ev.error?.code).toBe("BUNDLE_UNSAFE_ENTRY");
    expect(ev.error?.message).toContain(JSON.stringify(target));
    await expectUnchanged(d);
    await expect(stat(target)).rejects.toMatchObject({ code: "ENOENT" });
    await expectNowhere(basename(target));
  });

  it("10. a symlink entry (pointing outside, then written through) → BUNDLE_UNSAFE_ENTRY", async () => {
    const outside = join(d.adv.dir, unique("ef-outside"));
    await mkdir(outside);
    const pwned = { path: "escape/pwned.txt", data: Buffer.from("written through a symlink\n") };
    const files = [...payload(), pwned];
    const bundle = craft({
      listed: files,
      entries: [
        ...entries(payload()),
        { name: "escape", type: "2", linkname: outside },
        { name: pwned.path, data: pwned.data },
      ],
    });
    const ev = await attack(bundle);
    expect(ev.error?.code).toBe("BUNDLE_UNSAFE_ENTRY");
    expect(ev.error?.message).toContain('"escape"');
    await expectUnchanged(d);
    expect(await readdir(outside)).toEqual([]);
    expect(await findPaths(d.dataDir, (_p, isLink) => isLink)).toEqual([]);
    expect(dirname(outside)).toBe(d.adv.dir);
  });
});
