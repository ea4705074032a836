import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../shared/hash.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import type { SeenEvent } from "./adversary.js";
import {
  buildValidBundle,
  type CraftOptions,
  craftBundle,
  entriesOf,
  manifestBase,
  paxPath,
  type ServedBundle,
  sileroPayload,
  tarArchive,
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
 * More attacks carried by bundle bytes and manifests (architecture.md §2, issue 7): archive entry kinds and
 * names a safe extractor must refuse, decompression bombs, oversize downloads and incompatible
 * releases. Each must fail before anything is installed; the committed 5.0.0 keeps serving.
 */
describe("security: the agent refuses malicious archives and incompatible releases", () => {
  let d: SecuredDevice;
  let counter = 10;
  const release = () => ({ version: `6.${++counter}.0`, releaseCounter: 3 });

  beforeAll(async () => {
    d = await startSecuredDevice("sec-bundles2");
  });

  afterAll(async () => {
    await d?.close();
  });

  const payload = () => sileroPayload(d.silero);
  const entries = entriesOf;
  const craft = (o: Omit<CraftOptions, "release" | "signer">) =>
    craftBundle(d.silero, { release: release(), signer: d.adv.keys.release, ...o });

  /** Assigns `bundle`, waits for the outcome: it must be a failure (or a refusal of the document). */
  async function attack(bundle: ServedBundle, served: Buffer = bundle.bytes): Promise<SeenEvent> {
    d.adv.serve({ sha256: bundle.sha256, bytes: served });
    const doc = d.adv.desired([bundle]);
    const since = d.adv.events.length;
    await d.adv.publishDesired(doc);
    const outcome = await Promise.race([
      updateOutcome(d.adv, bundle.sha256, since),
      d.adv.waitForEvent("a refusal", (e) => e.type === "desired.rejected" && e.seq === doc.signed.seq),
    ]);
    expect(outcome.to, `AGENT BUG: malicious bundle ended ${outcome.to}`).not.toBe("committed");
    const status = await deviceStatus(d);
    expect(status.models[0]?.committed?.sha256).toBe(d.committed.sha256);
    return outcome;
  }

  async function expectFailedWith(bundle: ServedBundle, codes: readonly string[], served?: Buffer) {
    const ev = await attack(bundle, served);
    expect(codes).toContain(ev.error?.code);
    await expectUnchanged(d);
    return ev;
  }

  it("a tar entry name with a backslash → BUNDLE_UNSAFE_ENTRY", async () => {
    const files = payload();
    const bundle = craft({
      listed: files,
      entries: [...entries(files), { name: "..\\..\\evil.txt", data: Buffer.from("x") }],
    });
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY"]);
  });

  it("a tar entry name with a NUL (PAX path) → BUNDLE_UNSAFE_ENTRY", async () => {
    const files = payload();
    const bundle = craft({
      listed: files,
      entries: [...entries(files), paxPath("model.onnx\u0000.txt"), { name: "placeholder", data: Buffer.from("x") }],
    });
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY", "BUNDLE_UNLISTED_ENTRY"]);
  });

  it("a hardlink entry → BUNDLE_UNSAFE_ENTRY, no link on disk", async () => {
    const files = payload();
    const bundle = craft({
      listed: files,
      entries: [...entries(files), { name: "link", type: "1", linkname: "/etc/passwd" }],
    });
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY"]);
    expect(await findPaths(d.dataDir, (p) => p.endsWith("/link"))).toEqual([]);
  });

  it("a FIFO entry → BUNDLE_UNSAFE_ENTRY", async () => {
    const files = payload();
    const bundle = craft({ listed: files, entries: [...entries(files), { name: "pipe", type: "6" }] });
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY"]);
  });

  it("a duplicate entry (second samples.json with other bytes) → refused", async () => {
    const files = payload();
    const bundle = craft({
      listed: files,
      entries: [...entries(files), { name: "samples.json", data: Buffer.from("{}") }],
    });
    // Caught as a duplicate, or earlier by the byte tally (the copy exceeds the signed total).
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY", "BUNDLE_TOO_LARGE"]);
  });

  it("a 10,000-level nested path → refused without creating the directories", async () => {
    const files = payload();
    const deep = `${"a/".repeat(10_000)}x.txt`;
    const bundle = craft({
      listed: files,
      entries: [...entries(files), paxPath(deep), { name: "placeholder", data: Buffer.from("x") }],
    });
    await expectFailedWith(bundle, ["BUNDLE_UNSAFE_ENTRY", "BUNDLE_UNLISTED_ENTRY"]);
    expect(await findPaths(d.dataDir, (p) => p.endsWith("/a"))).toEqual([]);
  });

  it("a member that inflates far beyond its signed size (gzip bomb) → refused, no big file written", async () => {
    const files = payload();
    const bomb = Buffer.alloc(256 * 1024 * 1024); // 256 MiB of zeros: ~256 KiB gzipped
    const listed = [...files, { path: "baseline.json", data: Buffer.from("{}") }];
    const manifest = {
      ...manifestBase(d.silero, release()),
      files: listed.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256Hex(f.data) })),
    };
    const signed = signEnvelope(manifest, [d.adv.keys.release]);
    const tar = tarArchive([
      { name: "manifest.json", data: Buffer.from(`${JSON.stringify(signed)}\n`) },
      ...entries(files),
      { name: "baseline.json", data: bomb },
    ]);
    const bytes = gzipSync(tar, { level: 9 });
    expect(bytes.length).toBeLessThan(4 * 1024 * 1024);
    const bundle: ServedBundle = { sha256: sha256Hex(bytes), size: bytes.length, bytes, manifest: signed };
    await expectFailedWith(bundle, [
      "BUNDLE_TOO_LARGE",
      "BUNDLE_SIZE_MISMATCH",
      "BUNDLE_UNSAFE_ENTRY",
      "BUNDLE_HASH_MISMATCH",
    ]);
  });

  it("a bundle served longer than its signed size → download cut, partial file removed", async () => {
    const bundle = await buildValidBundle(d.adv.dir, d.silero, release(), d.adv.keys.release);
    const longer = Buffer.concat([bundle.bytes, randomBytes(300 * 1024)]);
    const ev = await expectFailedWith(
      bundle,
      ["BUNDLE_SIZE_MISMATCH", "BUNDLE_HASH_MISMATCH", "DOWNLOAD_FAILED", "CHUNK_INVALID"],
      longer,
    );
    const downloads = await readdir(join(d.dataDir, "downloads"));
    expect(ev.error?.code).toBe("BUNDLE_SIZE_MISMATCH");
    expect(downloads.filter((f) => f.startsWith(bundle.sha256))).toEqual([]);
  });

  for (const [what, compatibility] of [
    ["another architecture", { arch: ["riscv64"], minMemoryMB: 0, executionProviders: ["cpu"] }],
    ["more memory than the device has", { arch: [], minMemoryMB: 1_000_000, executionProviders: ["cpu"] }],
    ["a runtime the device lacks", { arch: [], minMemoryMB: 0, executionProviders: ["tensorrt"] }],
  ] as const) {
    it(`an incompatible release (${what}) → INCOMPATIBLE, never downloaded`, async () => {
      const files = payload();
      const manifest = {
        ...manifestBase(d.silero, release()),
        compatibility: {
          arch: [...compatibility.arch],
          minMemoryMB: compatibility.minMemoryMB,
          executionProviders: [...compatibility.executionProviders],
        },
        files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256Hex(f.data) })),
      };
      const signed = signEnvelope(manifest, [d.adv.keys.release]);
      const bytes = tarArchive([
        { name: "manifest.json", data: Buffer.from(`${JSON.stringify(signed)}\n`) },
        ...entries(files),
      ]);
      const bundle: ServedBundle = { sha256: sha256Hex(bytes), size: bytes.length, bytes, manifest: signed };
      await expectFailedWith(bundle, ["INCOMPATIBLE"]);
      expect(d.adv.chunkRequests(bundle.sha256)).toBe(0);
    });
  }
});
