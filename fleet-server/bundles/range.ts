import { EdgeFleetError } from "../../shared/errors.js";

export interface ByteRange {
  start: number;
  /** Inclusive, as in HTTP. */
  end: number;
}

/**
 * Parses a single-range `Range` header (RFC 9110 §14.1.2) against a resource of `size` bytes.
 * Returns null when the header should be ignored (absent, not `bytes=`, or several ranges — we
 * then serve the whole file with 200, which the RFC allows). Throws RANGE_NOT_SATISFIABLE for a
 * well-formed range that lies outside the file.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return null;
  // Both groups always take part in a match (each may be empty).
  const a = m[1] ?? "";
  const b = m[2] ?? "";
  if (a === "" && b === "") return null;
  if (a === "") {
    // Suffix range: the last N bytes.
    const n = Number(b);
    if (n === 0 || size === 0) throw unsatisfiable(header, size);
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  let end = b === "" ? size - 1 : Number(b);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) throw unsatisfiable(header, size);
  if (b !== "" && end < start) return null; // syntactically invalid → ignore, per RFC
  if (start >= size) throw unsatisfiable(header, size);
  end = Math.min(end, size - 1);
  return { start, end };
}

function unsatisfiable(header: string, size: number): EdgeFleetError {
  return new EdgeFleetError("RANGE_NOT_SATISFIABLE", `range "${header}" is outside the ${size}-byte resource`, {
    details: {
      size,
    },
  });
}
