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
 * Property-based fuzzing of every parser that sees untrusted bytes (issue 7): manifest, envelopes
 * (root chain), desired state, chunk frames, v2 infer requests. fast-check is not among our
 * dependencies (and may not be added here), so this is a small seeded generator in the same spirit:
 * random and mutated inputs, fixed seeds so a failure reproduces, and two properties throughout —
 * the parser never throws anything but an EdgeFleetError, and a mutated signed document is never accepted.
 */

function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
type R = () => number;
const int = (r: R, n: number) => Math.floor(r() * n);
const pick = <T>(r: R, xs: readonly T[]): T => xs[int(r, xs.length)]!;

const WEIRD = ["", "\u0000", "../", "/etc/passwd", "+", "#", "a".repeat(300), "\\", "💥", "__proto__", "constructor"];
function anyJson(r: R, depth = 0): unknown {
  const k = int(r, depth > 4 ? 6 : 9);
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return pick(r, [0, -1, 1.5, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, 1e-300]);
    case 3:
      return pick(r, WEIRD);
    case 4:
      return int(r, 1000);
    case 5:
      return Math.random().toString(36);
    case 6:
      return Array.from({ length: int(r, 5) }, () => anyJson(r, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: int(r, 5) }, () => [
          pick(r, [...WEIRD, "signed", "signatures", "version", "keyid", "sig"]),
          anyJson(r, depth + 1),
        ]),
      );
  }
}

/** Replaces one randomly chosen leaf or member of `doc` (a deep copy) with random JSON. */
function mutate(r: R, doc: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(doc)) as unknown;
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    paths.push(path);
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, [...path, i]);
    } else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(copy, []);
  const path = pick(
    r,
    paths.filter((p) => p.length > 0),
  );
  let parent = copy as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  const before = JSON.stringify(parent[last]);
  let next = anyJson(r);
  if (JSON.stringify(next) === before) next = `${before}x`;
  parent[last] = next;
  return copy;
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
const keys = makeKeys();

describe("fuzz: parsers of untrusted input", () => {
  it("manifest schema: random and mutated manifests never throw, mutations of required fields fail", () => {
    const r = rng(1);
    const valid = makeManifest();
    expect(ManifestSchema.safeParse(valid).success).toBe(true);
    for (let i = 0; i < RUNS; i++) {
      expect(() => ManifestSchema.safeParse(anyJson(r))).not.toThrow();
      expect(() => ManifestSchema.safeParse(mutate(r, valid))).not.toThrow();
    }
  });

  it("root chain: random payloads and mutated signed roots never rotate the trusted root", () => {
    const r = rng(2);
    const next = signEnvelope({ ...keys.root, version: 2 }, [keys.rootKey]);
    expect(applyRootChain(keys.root, [next]).version).toBe(2);
    for (let i = 0; i < RUNS; i++) {
      onlyOurErrors(() => applyRootChain(keys.root, anyJson(r)));
      expect(() => SignedRootSchema.safeParse(anyJson(r))).not.toThrow();
      const m = mutate(r, next) as { signed?: unknown };
      let version = 1;
      try {
        version = applyRootChain(keys.root, [m]).version;
      } catch (err) {
        expect(err).toBeInstanceOf(EdgeFleetError);
      }
      // Only a mutation outside `signed` that leaves a valid signature in place may still rotate.
      if (version === 2) expect(JSON.stringify(m.signed)).toBe(JSON.stringify(next.signed));
    }
  });

  it("desired state: random documents never throw; mutated signed content is never accepted", () => {
    const r = rng(3);
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
    for (let i = 0; i < RUNS; i++) {
      expect(verifyDesiredState(anyJson(r), ctx).ok).toBe(false);
      const m = mutate(r, signedDoc) as { signed?: unknown };
      const res = verifyDesiredState(m, ctx);
      if (res.ok) expect(JSON.stringify(m.signed)).toBe(JSON.stringify(signedDoc.signed));
    }
  });

  it("chunk frames: random bytes and truncated/bit-flipped frames decode or fail with our error", () => {
    const r = rng(4);
    const frame = encodeChunkFrame(
      { reqId: "r1", bundle: "b".repeat(64), offset: 0, length: 4, size: 4 },
      new Uint8Array([1, 2, 3, 4]),
    );
    for (let i = 0; i < RUNS; i++) {
      const bytes = Buffer.from(Array.from({ length: int(r, 64) }, () => int(r, 256)));
      onlyOurErrors(() => decodeChunkFrame(bytes));
      const cut = frame.subarray(0, int(r, frame.length));
      onlyOurErrors(() => decodeChunkFrame(cut));
      const flipped = Buffer.from(frame);
      const at = int(r, flipped.length);
      flipped[at] = flipped[at]! ^ (1 << int(r, 8));
      onlyOurErrors(() => decodeChunkFrame(flipped));
    }
  });

  it("v2 infer requests: random bodies, deep nesting and huge shapes fail with our error", () => {
    const r = rng(5);
    for (let i = 0; i < RUNS; i++) {
      onlyOurErrors(() => parseInferBody(anyJson(r)));
      onlyOurErrors(() =>
        parseInferBody({ inputs: [{ name: "x", shape: [int(r, 4)], datatype: "FP32", data: anyJson(r) }] }),
      );
    }
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
