import {
  type DocumentOptions,
  LineCounter,
  type ParseOptions,
  parseDocument,
  type SchemaOptions,
  type YAMLError,
} from "yaml";
import { EdgeFleetError } from "./errors.js";

/**
 * Operator documents (rollout definitions) as JSON or YAML text, turned into a plain value that a
 * zod schema then checks. The text comes from files and HTTP bodies, i.e. it is untrusted: YAML
 * is read with the YAML 1.2 core schema only (no custom tags, no YAML 1.1 `!!binary`/`!!set`/
 * `!!timestamp`, no `<<` merge keys), as exactly one document with unique string keys, and the
 * aliases are bounded twice: the library's alias-use limit and a cap on values after expansion
 * (an anchored list used many times costs its size each time once a schema walks it).
 */
export type TextFormat = "json" | "yaml";

export const YAML_LIMITS = {
  /** Source size; a rollout definition with 10,000 device ids is well under 1 MiB. */
  maxSourceBytes: 2 * 1024 * 1024,
  /** The `yaml` library's billion-laughs guard: alias uses weighted by their nesting. */
  maxAliasCount: 50,
  /** Scalars and collections after aliases are expanded. */
  maxValues: 200_000,
} as const;

/** Media types of a YAML HTTP body (RFC 9512 registered `application/yaml`; the rest are in common use). */
export const YAML_MEDIA_TYPES = ["application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"] as const;

const YAML_OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  version: "1.2",
  schema: "core",
  customTags: [],
  resolveKnownTags: false,
  merge: false,
  stringKeys: true,
  uniqueKeys: true,
  strict: true,
  prettyErrors: false,
};

/** The format a file name says (`.json`, `.yaml`, `.yml`), or null when it says nothing we know. */
export function formatFromPath(path: string): TextFormat | null {
  const lower = path.toLowerCase();
  if (lower.endsWith(".json")) return "json";
  if (lower.endsWith(".yaml") || lower.endsWith(".yml")) return "yaml";
  return null;
}

/** Without a telling name: a JSON document starts with `{` or `[`; anything else is read as YAML. */
export function sniffFormat(text: string): TextFormat {
  const first = text.replace(/^\uFEFF/, "").trimStart()[0];
  return first === "{" || first === "[" ? "json" : "yaml";
}

function bad(source: string, message: string, details: Record<string, unknown>): EdgeFleetError {
  return new EdgeFleetError("BAD_REQUEST", `${source}: ${message}`, { details: details });
}

function syntaxError(source: string, err: YAMLError, lines: LineCounter, what: string): EdgeFleetError {
  const { line, col } = lines.linePos(err.pos[0]);
  return bad(source, `${what} at line ${line}, column ${col}: ${err.message}`, {
    format: "yaml",
    line,
    column: col,
    reason: err.code,
  });
}

/** Counts values as a schema would walk them (shared alias targets count every time), up to `limit`. */
function countValues(value: unknown, limit: number): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0 && count <= limit) {
    const v = stack.pop();
    count++;
    // A loop, not push(...v): spreading a list of 100k+ values overflows the call stack.
    const children = Array.isArray(v) ? v : v !== null && typeof v === "object" ? Object.values(v) : [];
    for (const c of children) stack.push(c);
  }
  return count;
}

/** One YAML document to a plain value; any syntax error, warning or limit is a BAD_REQUEST with its position. */
export function parseYamlText(text: string, source: string): unknown {
  if (Buffer.byteLength(text, "utf8") > YAML_LIMITS.maxSourceBytes) {
    throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `${source}: YAML over ${YAML_LIMITS.maxSourceBytes} bytes`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter: lines });
  const error = doc.errors[0];
  if (error) throw syntaxError(source, error, lines, "YAML syntax error");
  // The library only warns about tags it cannot resolve (and reads the value as plain); on
  // untrusted input a tag the author relied on must not be silently ignored.
  const warning = doc.warnings[0];
  if (warning) throw syntaxError(source, warning, lines, "YAML not accepted");
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: YAML_LIMITS.maxAliasCount });
  } catch (err) {
    throw bad(source, `YAML refused: ${err instanceof Error ? err.message : String(err)}`, {
      format: "yaml",
      reason: "EXCESSIVE_ALIASES",
      maxAliasCount: YAML_LIMITS.maxAliasCount,
    });
  }
  if (countValues(value, YAML_LIMITS.maxValues) > YAML_LIMITS.maxValues) {
    throw bad(source, `YAML refused: more than ${YAML_LIMITS.maxValues} values once aliases are expanded`, {
      format: "yaml",
      reason: "EXCESSIVE_ALIASES",
      maxValues: YAML_LIMITS.maxValues,
    });
  }
  return value;
}

/** JSON text to a value; a syntax error is a BAD_REQUEST, with line and column when V8 gives a position. */
export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text.replace(/^\uFEFF/, "")); // editors on Windows save one; JSON.parse refuses it
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const at = /at position (\d+)/.exec(message);
    if (!at) throw bad(source, `not valid JSON: ${message}`, { format: "json" });
    const before = text.slice(0, Number(at[1])).split("\n");
    const line = before.length;
    const column = before.at(-1)!.length + 1;
    throw bad(source, `not valid JSON at line ${line}, column ${column}: ${message}`, { format: "json", line, column });
  }
}

export function parseStructuredText(text: string, format: TextFormat, source: string): unknown {
  return format === "json" ? parseJsonText(text, source) : parseYamlText(text, source);
}
