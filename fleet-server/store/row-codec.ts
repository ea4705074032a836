import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";

/**
 * Decoding at the persistence boundary (issue 23, "rows parsed at the store"): every JSON column
 * and enum is parsed with its schema when read, so code above the store works with typed values
 * and a corrupt row (hand-edited, half-written by a bug, from a future schema) is one clear
 * `INTERNAL` error naming the table, the row's key and the column, never a silently wrong type.
 */
export interface ColumnRef {
  table: string;
  /** The row's key as an operator would look it up, e.g. `id=r-1` or `device_id=d-1, event_seq=3`. */
  key: string;
  column: string;
}

const schemaAsUnknown = z.unknown();

function corrupt(at: ColumnRef, problem: string): EdgeFleetError {
  return new EdgeFleetError(
    "INTERNAL",
    `corrupt row in table ${at.table} (${at.key}): column ${at.column} ${problem}`,
    { details: { table: at.table, key: at.key, column: at.column } },
  );
}

function checked<S extends z.ZodType>(schema: S, value: unknown, at: ColumnRef): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const path = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
  throw corrupt(at, `does not match its schema${path}: ${issue?.message ?? "invalid"}`);
}

/** A JSON text column, parsed and then checked against `schema`; SQL NULL is corrupt (see `decodeJsonOrNull`). */
export function decodeJson<S extends z.ZodType>(schema: S, text: string | null, at: ColumnRef): z.output<S> {
  if (text === null) throw corrupt(at, "is NULL");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(at, `is not JSON: ${(err as Error).message}`);
  }
  return checked(schema, value, at);
}

/** A nullable JSON text column: SQL NULL stays null. */
export function decodeJsonOrNull<S extends z.ZodType>(
  schema: S,
  text: string | null,
  at: ColumnRef,
): z.output<S> | null {
  return text === null ? null : decodeJson(schema, text, at);
}

/**
 * A signed document (or one that will be signed): checked against `schema` but returned exactly
 * as stored. Its signature covers the canonical JSON of what was signed, so a parse that strips
 * an unknown key or fills a default would make the server hand devices a document whose
 * signature no longer verifies (and would change a pending release's id, a hash of it).
 */
export function decodeSignedJson<S extends z.ZodType>(schema: S, text: string, at: ColumnRef): z.output<S> {
  const value = decodeJson(schemaAsUnknown, text, at);
  checked(schema, value, at);
  return value as z.output<S>;
}

/** A nullable signed document column (see `decodeSignedJson`). */
export function decodeSignedJsonOrNull<S extends z.ZodType>(
  schema: S,
  text: string | null,
  at: ColumnRef,
): z.output<S> | null {
  return text === null ? null : decodeSignedJson(schema, text, at);
}

/** A plain (non-JSON) column checked against an enum or other schema. */
export function decodeValue<S extends z.ZodType>(schema: S, value: unknown, at: ColumnRef): z.output<S> {
  return checked(schema, value, at);
}
