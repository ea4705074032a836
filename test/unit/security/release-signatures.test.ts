import { describe, expect, it } from "vitest";
import { collectReleaseSignatures, signatureStatus } from "../../../fleet-server/registry/release-signing.js";
import { sileroManifest } from "../../../scripts/demo/silero.js";
import { releaseSign } from "../../../scripts/fleetctl/keys-commands.js";
import {
  formatPending,
  formatSubmit,
  mergeSignatureFiles,
  parseSignatureFile,
} from "../../../scripts/fleetctl/release-commands.js";
import { canonicalBytes } from "../../../shared/canonical-json.js";
import { sha256Hex } from "../../../shared/hash.js";
import type { PendingReleaseView } from "../../../shared/schemas/release-signing.js";
import type { Root, Signature } from "../../../shared/schemas/trust.js";
import { signEnvelope } from "../../../shared/trust/envelope.js";
import { generateKeyPair, type KeyPair } from "../../../shared/trust/keys.js";

/** A root whose release role is 2 of `release`; the root and director keys are distinct. */
function rootWith(release: KeyPair[], threshold = 2): Root {
  const root = generateKeyPair();
  const director = generateKeyPair();
  return {
    _type: "root",
    version: 1,
    expires: "2100-01-01T00:00:00Z",
    keys: Object.fromEntries([root, director, ...release].map((k) => [k.keyid, k.publicKey])),
    roles: {
      root: { keyids: [root.keyid], threshold: 1 },
      release: { keyids: release.map((k) => k.keyid), threshold },
      director: { keyids: [director.keyid], threshold: 1 },
    },
  };
}

const sigBy = (manifest: unknown, k: KeyPair): Signature => signEnvelope(manifest, [k]).signatures[0]!;

describe("collecting k-of-n release signatures (pure)", () => {
  const [a, b, c] = [generateKeyPair(), generateKeyPair(), generateKeyPair()] as [KeyPair, KeyPair, KeyPair];
  const root = rootWith([a, b, c]);
  const manifest = sileroManifest();

  it("keeps a valid signature below the threshold and publishes once another key holder adds one", () => {
    const first = collectReleaseSignatures(manifest, [], { signed: manifest, signatures: [sigBy(manifest, a)] }, root);
    expect(first.envelope).toBeNull();
    expect(first.added).toBe(1);
    expect(first.status).toEqual({
      required: 2,
      valid: 1,
      needed: 1,
      signedBy: [a.keyid],
      missing: [b.keyid, c.keyid],
    });
    const second = collectReleaseSignatures(
      manifest,
      first.signatures,
      { signed: manifest, signatures: [sigBy(manifest, c)] },
      root,
    );
    expect(second.added).toBe(1);
    expect(second.status).toMatchObject({ valid: 2, needed: 0, missing: [b.keyid] });
    expect(second.envelope?.signatures.map((s) => s.keyid)).toEqual([a.keyid, c.keyid]);
  });

  it("counts a key once however often it signs, and keeps only valid signatures", () => {
    const stranger = generateKeyPair();
    const garbage: Signature = { keyid: b.keyid, sig: "0".repeat(128) };
    const r = collectReleaseSignatures(
      manifest,
      [sigBy(manifest, a)],
      { signed: manifest, signatures: [sigBy(manifest, a), sigBy(manifest, a), garbage, sigBy(manifest, stranger)] },
      root,
    );
    expect(r.envelope).toBeNull();
    expect(r.added).toBe(0);
    expect(r.signatures.map((s) => s.keyid)).toEqual([a.keyid]);
  });

  it("refuses an upload with no valid release signature, and a signature over another manifest", () => {
    const other = { ...manifest, releaseCounter: manifest.releaseCounter + 1 };
    const overOther = () =>
      collectReleaseSignatures(
        manifest,
        [],
        { signed: manifest, signatures: [sigBy(other, a), sigBy(other, b)] },
        root,
      );
    expect(overOther).toThrow(expect.objectContaining({ code: "SIGNATURE_THRESHOLD_NOT_MET" }));
    const mismatch = () =>
      collectReleaseSignatures(manifest, [], { signed: other, signatures: [sigBy(other, a), sigBy(other, b)] }, root);
    expect(mismatch).toThrow(expect.objectContaining({ code: "MANIFEST_MISMATCH" }));
  });

  it("re-checks collected signatures under the current root: a rotated-out key stops counting", () => {
    const d = generateKeyPair();
    const rotated = rootWith([b, c, d]);
    const collected = [sigBy(manifest, a)];
    const r = collectReleaseSignatures(
      manifest,
      collected,
      { signed: manifest, signatures: [sigBy(manifest, b)] },
      rotated,
    );
    expect(r.status).toMatchObject({ valid: 1, needed: 1, signedBy: [b.keyid] });
    expect(r.envelope).toBeNull();
    expect(signatureStatus([], rotated).missing).toEqual([b.keyid, c.keyid, d.keyid]);
  });
});

describe("fleetctl release files (pure)", () => {
  const [a, b] = [generateKeyPair(), generateKeyPair()] as [KeyPair, KeyPair];
  const manifest = sileroManifest();
  const id = sha256Hex(canonicalBytes(manifest));

  it("parses what release sign writes and merges one manifest's files into one upload", () => {
    const fa = parseSignatureFile("a.json", JSON.stringify(releaseSign({ manifest }, [a])));
    const fb = parseSignatureFile("b.json", JSON.stringify(releaseSign(manifest, [b])));
    const fab = parseSignatureFile("ab.json", JSON.stringify(releaseSign(releaseSign(manifest, [a]), [b])));
    expect(fa.id).toBe(id);
    const merged = mergeSignatureFiles([fa, fb, fab]);
    expect(merged).toHaveLength(1);
    expect(merged[0]!.files).toEqual(["a.json", "b.json", "ab.json"]);
    expect(merged[0]!.signatures.map((s) => s.keyid)).toEqual([a.keyid, b.keyid]);
  });

  it("names what is wrong with a bad file", () => {
    const bad = (text: string) => {
      try {
        parseSignatureFile("f.json", text);
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error("accepted");
    };
    expect(bad("{nope")).toMatchObject({
      code: "VALIDATION_FAILED",
      message: expect.stringMatching(/^f\.json: not JSON/),
    });
    expect(bad(JSON.stringify({ manifest })).message).toMatch(/unsigned manifest: sign it first/);
    expect(bad(JSON.stringify(manifest)).message).toMatch(/unsigned manifest/);
    expect(bad(JSON.stringify({ signed: manifest, signatures: [] })).message).toMatch(/no signatures/);
    expect(bad(JSON.stringify({ signed: { hello: 1 }, signatures: [sigBy({ hello: 1 }, a)] })).message).toMatch(
      /signed: not a release manifest/,
    );
  });

  it("shows what must be signed and what is missing", () => {
    const view: PendingReleaseView = {
      id,
      kind: "upload",
      name: "vad",
      version: "1.0.0",
      variant: "fp32",
      releaseCounter: 3,
      originSha256: null,
      createdAt: "2026-01-01T00:00:00Z",
      signatures: { required: 2, valid: 1, needed: 1, signedBy: [a.keyid], missing: [b.keyid] },
      manifest,
    };
    const text = formatPending([view]).join("\n");
    expect(text).toContain("vad@1.0.0 fp32 (upload, release 3)  signatures 1/2");
    expect(text).toContain(`manifest ${id}`);
    expect(text).toContain(`still missing 1 signature, from ${b.keyid.slice(0, 16)}…`);
    expect(formatPending([])).toEqual(["no releases wait for signatures"]);
    const published = formatSubmit(
      {
        ...view,
        published: true,
        added: 1,
        signatures: { ...view.signatures, valid: 2, needed: 0, missing: [] },
        bundle: { sha256: "f".repeat(64), size: 2048 },
      },
      ["b.json"],
    );
    expect(published[0]).toBe("vad@1.0.0 fp32 (upload, release 3): 1 new signature from b.json; 2/2 — published");
  });
});
