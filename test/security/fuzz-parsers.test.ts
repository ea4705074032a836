import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseInferBody } from "../../agent/api/v2-body.js";
import { applyRootChain } from "../../agent/trust/pinned-root.js";
import { type VerifyContext, verifyDesiredState } from "../../agent/trust/verify-desired.js";
import { decodeChunkFrame, encodeChunkFrame } from "../../shared/chunk-frame.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { ManifestSchema } from "../../shared/schemas/manifest.js";
import { SignedRootSchema } from "../../shared/schemas/trust.js";
import { signEnvelope } from "../../shared/trust/envelope.js";
import { makeKeys, makeManifest } from "../unit/agent-updater/helpers.js";

/**
 * Property-based fuzzing (fast-check) of every parser that sees untrusted bytes (issue 7): manifest,
 * envelopes (root chain), desired state, chunk frames, v2 infer requests. Two properties throughout:
 * a parser never throws anything but an EdgeFleetError, and a mutated signed document is never
 * accepted unless the mutation left `signed` untouched. Fixed seeds so a failure reproduces.
 * Request paths (percent-encoding, `%2F`, `//`, `;`, dot segments) are fuzzed against the real
 * server's routes and authorization in route-matrix.test.ts (issue 20 §1).
 */
const WEIRD = ["", "\u0000", "../", "/etc/passwd", "+", "#", "a".repeat(300), "\\", "💥", "__proto__", "constructor"];

/** Arbitrary JSON, biased towards the strings and keys our parsers care about. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.constantFrom(0, -1, 1.5, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, 1e-300),
    fc.integer(),
    fc.constantFrom(...WEIRD),
    fc.string(),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(
      fc.oneof(fc.constantFrom(...WEIRD, "signed", "signatures", "version", "keyid", "sig"), fc.string()),
      tie("value"),
      { maxKeys: 5 },
    ),
  ),
})).value;

/** Every path to a member of `doc`, so a mutation can target any leaf or subtree. */
function pathsOf(doc: unknown): (string | number)[][] {
  const out: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    if (path.length > 0) out.push(path);
    if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, [...path, i]);
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(doc, []);
  return out;
}

/** `doc` (deep-copied) with the member at one of its paths replaced by a different JSON value. */
function mutated(doc: unknown): fc.Arbitrary<unknown> {
  const paths = pathsOf(doc);
  return fc.tuple(fc.nat({ max: paths.length - 1 }), anyJson).map(([i, value]) => {
    const copy = JSON.parse(JSON.stringify(doc)) as unknown;
    const path = paths[i]!;
    let parent = copy as Record<string | number, unknown>;
    for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
    const last = path.at(-1)!;
    const before = JSON.stringify(parent[last]);
    parent[last] = JSON.stringify(value) === before ? `${before}x` : value;
    return copy;
  });
}

/** Runs `f` and allows only a normal return or an EdgeFleetError. */
function onlyOurErrors(f: () => unknown): void {
  try {
    f();
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(EdgeFleetError);
  }
}

const RUNS = 400;
const params = (seed: number) => ({ numRuns: RUNS, seed });
const keys = makeKeys();

describe("fuzz: parsers of untrusted input", () => {
  it("manifest schema: random and mutated manifests never throw, mutations of required fields fail", () => {
    const valid = makeManifest();
    expect(ManifestSchema.safeParse(valid).success).toBe(true);
    fc.assert(
      fc.property(anyJson, mutated(valid), (random, m) => {
        expect(() => ManifestSchema.safeParse(random)).not.toThrow();
        expect(() => ManifestSchema.safeParse(m)).not.toThrow();
      }),
      params(1),
    );
  });

  it("root chain: random payloads and mutated signed roots never rotate the trusted root", () => {
    const next = signEnvelope({ ...keys.root, version: 2 }, [keys.rootKey]);
    expect(applyRootChain(keys.root, [next]).version).toBe(2);
    fc.assert(
      fc.property(anyJson, mutated(next), (random, mutation) => {
        onlyOurErrors(() => applyRootChain(keys.root, random));
        expect(() => SignedRootSchema.safeParse(random)).not.toThrow();
        const m = mutation as { signed?: unknown };
        let version = 1;
        try {
          version = applyRootChain(keys.root, [m]).version;
        } catch (err) {
          expect(err).toBeInstanceOf(EdgeFleetError);
        }
        // Only a mutation outside `signed` that leaves a valid signature in place may still rotate.
        if (version === 2) expect(JSON.stringify(m.signed)).toBe(JSON.stringify(next.signed));
      }),
      params(2),
    );
  });

  it("desired state: random documents never throw; mutated signed content is never accepted", () => {
    const manifest = makeManifest();
    const signedDoc = signEnvelope(
      {
        _type: "desired",
        deviceId: "dev-1",
        seq: 5,
        issuedAt: "2025-06-01T00:00:00Z",
        expires: "2025-06-02T00:00:00Z",
        assignments: [
          {
            model: manifest.model.name,
            bundle: { sha256: "a".repeat(64), size: 1000 },
            releaseCounter: manifest.releaseCounter,
            manifest: signEnvelope(manifest, [keys.release]),
          },
        ],
      },
      [keys.director],
    );
    const ctx: VerifyContext = {
      root: keys.root,
      deviceId: "dev-1",
      lastSeq: 4,
      now: Date.parse("2025-06-01T12:00:00Z"),
      highestCounters: new Map(),
      badBundles: new Set(),
    };
    const baseline = verifyDesiredState(signedDoc, ctx);
    expect(baseline.ok, JSON.stringify(baseline)).toBe(true);
    fc.assert(
      fc.property(anyJson, mutated(signedDoc), (random, mutation) => {
        expect(verifyDesiredState(random, ctx).ok).toBe(false);
        const m = mutation as { signed?: unknown };
        const res = verifyDesiredState(m, ctx);
        if (res.ok) expect(JSON.stringify(m.signed)).toBe(JSON.stringify(signedDoc.signed));
      }),
      params(3),
    );
  });

  it("chunk frames: random bytes and truncated/bit-flipped frames decode or fail with our error", () => {
    const frame = encodeChunkFrame(
      { reqId: "r1", bundle: "b".repeat(64), offset: 0, length: 4, size: 4 },
      new Uint8Array([1, 2, 3, 4]),
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.nat({ max: frame.length }),
        fc.nat({ max: frame.length - 1 }),
        fc.nat({ max: 7 }),
        (bytes, cutAt, flipAt, bit) => {
          onlyOurErrors(() => decodeChunkFrame(Buffer.from(bytes)));
          onlyOurErrors(() => decodeChunkFrame(frame.subarray(0, cutAt)));
          const flipped = Buffer.from(frame);
          flipped[flipAt] = flipped[flipAt]! ^ (1 << bit);
          onlyOurErrors(() => decodeChunkFrame(flipped));
        },
      ),
      params(4),
    );
  });

  it("v2 infer requests: random bodies, deep nesting and huge shapes fail with our error", () => {
    fc.assert(
      fc.property(anyJson, fc.nat({ max: 3 }), anyJson, (body, dim, data) => {
        onlyOurErrors(() => parseInferBody(body));
        onlyOurErrors(() => parseInferBody({ inputs: [{ name: "x", shape: [dim], datatype: "FP32", data }] }));
      }),
      params(5),
    );
    let deep: unknown = [1];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => parseInferBody({ inputs: [{ name: "x", shape: [1], datatype: "FP32", data: deep }] })).toThrow(
      EdgeFleetError,
    );
    expect(() =>
      parseInferBody({ inputs: [{ name: "x", shape: [1 << 20, 1 << 20], datatype: "FP32", data: [] }] }),
    ).toThrow(EdgeFleetError);
  });
});
