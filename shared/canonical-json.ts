import canonicalizeImpl from "canonicalize";

/**
 * RFC 8785 (JCS) canonical JSON. Signatures are computed over these bytes (architecture.md §3).
 * We use the `canonicalize` package (reference implementation by the RFC's author) rather
 * than hand-rolling number serialisation, which is the subtle part of JCS.
 */
export function canonicalJson(value: unknown): string {
  // The package is CommonJS (`module.exports = serialize`) but its .d.ts declares `export default`,
  // which NodeNext resolution reads as `exports.default`: at run time the default import is the
  // function itself, so the declared type has to be overridden here (the one cast this file needs).
  const out = (canonicalizeImpl as unknown as (v: unknown) => string | undefined)(value);
  if (out === undefined) throw new TypeError("value cannot be canonicalized (undefined at top level)");
  return out;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}
