import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { extractBundle } from "../../../agent/bundle/safe-extract.js";
import { EdgeFleetError } from "../../../shared/errors.js";
import {
  buildTar,
  MODEL_BYTES,
  makeKeys,
  makeManifest,
  type RawEntry,
  SAMPLES_BYTES,
  signedManifest,
} from "./helpers.js";

const keys = makeKeys();
const manifest = makeManifest();
const envelope = signedManifest(keys, manifest);
const manifestBytes = Buffer.from(JSON.stringify(envelope));

const good: RawEntry[] = [
  { name: "manifest.json", data: manifestBytes },
  { name: "model.onnx", data: MODEL_BYTES },
  { name: "samples.json", data: SAMPLES_BYTES },
];

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ef-extract-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(archive: Buffer, maxEntries = 64) {
  const bundlePath = join(dir, "bundle.tar");
  await writeFile(bundlePath, archive);
  return extractBundle({
    bundlePath,
    rawManifest: envelope,
    manifest,
    stagingParent: join(dir, "work", "staging"),
    destDir: join(dir, "work", "models", "vad", "abc"),
    limits: { maxEntries, maxTotalBytes: 2 * 1024 ** 3, maxManifestBytes: 1024 * 1024 },
  });
}

async function expectCode(archive: Buffer, code: string, maxEntries = 64) {
  const err = await run(archive, maxEntries).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeFleetError);
  expect((err as EdgeFleetError).code).toBe(code);
  // nothing left behind: staging removed, destination never created, nothing outside either
  expect(await readdir(join(dir, "work", "staging"))).toEqual([]);
  await expect(stat(join(dir, "work", "models"))).rejects.toThrow();
  expect((await readdir(dir)).sort()).toEqual(["bundle.tar", "work"]);
  expect(await readdir(join(dir, "work"))).toEqual(["staging"]);
}

describe("extractBundle", () => {
  it("extracts a valid plain tar and writes the canonical manifest", async () => {
    const dest = await run(buildTar(good));
    expect((await readdir(dest)).sort()).toEqual(["manifest.json", "model.onnx", "samples.json"]);
    expect(await readFile(join(dest, "model.onnx"))).toEqual(MODEL_BYTES);
    expect(JSON.parse(await readFile(join(dest, "manifest.json"), "utf8"))).toEqual(envelope);
    expect((await stat(dest)).mode & 0o777).toBe(0o700);
  });

  it("extracts a gzipped tar", async () => {
    const dest = await run(gzipSync(buildTar(good)));
    expect(await readFile(join(dest, "samples.json"))).toEqual(SAMPLES_BYTES);
  });

  it("rejects ../ traversal", () =>
    expectCode(buildTar([...good, { name: "../evil", data: Buffer.from("x") }]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects absolute paths", () =>
    expectCode(buildTar([{ name: "/abs", data: Buffer.from("x") }, ...good]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects backslashes", () =>
    expectCode(buildTar([...good, { name: "a\\b", data: Buffer.from("x") }]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects symlinks", () =>
    expectCode(buildTar([{ name: "model.onnx", type: "2", linkname: "/etc/passwd" }, ...good]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects hardlinks", () =>
    expectCode(buildTar([{ name: "model.onnx", type: "1", linkname: "/etc/passwd" }, ...good]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects character devices", () =>
    expectCode(buildTar([{ name: "dev", type: "3" }, ...good]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects FIFOs", () => expectCode(buildTar([{ name: "fifo", type: "6" }, ...good]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects duplicate entries", () =>
    expectCode(buildTar([...good, { name: "model.onnx", data: MODEL_BYTES }]), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects unlisted entries", () =>
    expectCode(buildTar([...good, { name: "extra.bin", data: Buffer.from("x") }]), "BUNDLE_UNLISTED_ENTRY"));
  it("rejects a missing listed file", () => expectCode(buildTar([good[0]!, good[1]!]), "BUNDLE_MISSING_FILE"));
  it("rejects a missing manifest.json", () => expectCode(buildTar([good[1]!, good[2]!]), "BUNDLE_MISSING_FILE"));
  it("rejects a file whose hash differs from the manifest", () => {
    const tampered = Buffer.from(MODEL_BYTES);
    tampered[0] = tampered[0]! ^ 1;
    return expectCode(buildTar([good[0]!, { name: "model.onnx", data: tampered }, good[2]!]), "BUNDLE_HASH_MISMATCH");
  });
  it("rejects a file whose size differs from the manifest", () =>
    expectCode(
      buildTar([good[0]!, { name: "model.onnx", data: Buffer.concat([MODEL_BYTES, Buffer.from("!")]) }, good[2]!]),
      "BUNDLE_SIZE_MISMATCH",
    ));
  it("rejects a manifest.json that differs from the signed one", () => {
    const other = Buffer.from(JSON.stringify({ ...envelope, signatures: [] }));
    return expectCode(buildTar([{ name: "manifest.json", data: other }, good[1]!, good[2]!]), "MANIFEST_MISMATCH");
  });
  it("caps the entry count", () => expectCode(buildTar(good), "BUNDLE_TOO_LARGE", 2));
  it("rejects a header that declares more than the manifest allows", () =>
    expectCode(buildTar([{ name: "model.onnx", size: 3 * 1024 * 1024 * 1024 }]), "BUNDLE_TOO_LARGE"));
  it("rejects something that is not a tar", () =>
    expectCode(Buffer.from("hello world".repeat(100)), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects a doubly compressed archive", () =>
    expectCode(gzipSync(gzipSync(buildTar(good))), "BUNDLE_UNSAFE_ENTRY"));
  it("rejects a truncated archive", () => expectCode(buildTar(good).subarray(0, 1100), "BUNDLE_UNSAFE_ENTRY"));
});
