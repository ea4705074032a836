/**
 * SQLite → PostgreSQL translation of the repositories' SQL (issue 14), for what is mechanical;
 * statements that really differ are written per dialect where they are (`dialectOf`). Pure: unit
 * tested on every migration and every statement the repositories prepare.
 *
 * Statements (`translateStatement`), outside string literals, quoted identifiers and comments:
 * - `?` → `$1..$n`; `@name` → `$k` (one number per distinct name, values taken from an object);
 * - `INSERT OR IGNORE INTO … ` → `INSERT INTO … ON CONFLICT DO NOTHING`;
 * - two-argument `MAX(a, b)` / `MIN(a, b)` (SQLite's scalar forms) → `GREATEST` / `LEAST`;
 * - `AS camelCase` (mixed case) → `AS "camelCase"`: PostgreSQL folds unquoted names to lower case, and the
 *   repositories read result columns by their alias.
 *
 * Schema (`translateDdl`, migrations only): INTEGER → BIGINT, REAL → DOUBLE PRECISION, BLOB →
 * BYTEA, `INTEGER PRIMARY KEY AUTOINCREMENT` → an identity column, TEXT → `TEXT COLLATE "C"` (byte
 * order, as SQLite's BINARY collation: `ORDER BY id` and keyset paging `id > ?` agree on both
 * engines whatever the database's locale), `WITHOUT ROWID` dropped, and SQLite's append-only
 * triggers (`BEGIN SELECT RAISE(ABORT, '…'); END`) → a PL/pgSQL function and trigger.
 */

export interface PgStatement {
  text: string;
  /** `@name` parameters in `$n` order; null when the statement uses `?`. */
  names: string[] | null;
}

type Chunk = { code: true; text: string } | { code: false; text: string };

/** Splits SQL into code and non-code (string literals, quoted identifiers, comments). */
function chunks(sql: string): Chunk[] {
  const out: Chunk[] = [];
  let code = "";
  let i = 0;
  const flush = () => {
    if (code) out.push({ code: true, text: code });
    code = "";
  };
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      flush();
      let j = i + 1;
      for (;;) {
        if (j >= sql.length) break;
        if (sql[j] === c) {
          if (sql[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      out.push({ code: false, text: sql.slice(i, j + 1) });
      i = j + 1;
    } else if (c === "-" && sql[i + 1] === "-") {
      flush();
      const end = sql.indexOf("\n", i);
      const j = end === -1 ? sql.length : end;
      out.push({ code: false, text: sql.slice(i, j) });
      i = j;
    } else if (c === "/" && sql[i + 1] === "*") {
      flush();
      const end = sql.indexOf("*/", i + 2);
      const j = end === -1 ? sql.length : end + 2;
      out.push({ code: false, text: sql.slice(i, j) });
      i = j;
    } else {
      code += c;
      i++;
    }
  }
  flush();
  return out;
}

const INSERT_OR_IGNORE = /\bINSERT\s+OR\s+IGNORE\s+INTO\b/i;
const SCALAR_MAX_MIN = /\b(MAX|MIN)\(([^(),]+),([^(),]+)\)/gi;
const CAMEL_ALIAS = /\bAS\s+([A-Za-z_][A-Za-z0-9_]*)/g;

export function translateStatement(sql: string): PgStatement {
  let n = 0;
  const names: string[] = [];
  let ignore = false;
  const text = chunks(sql)
    .map((ch) => {
      if (!ch.code) return ch.text;
      let t = ch.text;
      if (INSERT_OR_IGNORE.test(t)) {
        ignore = true;
        t = t.replace(INSERT_OR_IGNORE, "INSERT INTO");
      }
      t = t.replace(
        SCALAR_MAX_MIN,
        (_m, fn: string, a: string, b: string) => `${fn.toUpperCase() === "MAX" ? "GREATEST" : "LEAST"}(${a},${b})`,
      );
      t = t.replace(CAMEL_ALIAS, (m, id: string) => (/[a-z]/.test(id) && /[A-Z]/.test(id) ? `AS "${id}"` : m));
      return t.replace(/\?|@([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string | undefined) => {
        if (name === undefined) return `$${++n}`;
        let k = names.indexOf(name);
        if (k === -1) k = names.push(name) - 1;
        return `$${k + 1}`;
      });
    })
    .join("");
  if (n > 0 && names.length > 0) throw new Error("a statement mixes ? and @name parameters");
  const trimmed = text.replace(/[\s;]+$/, "");
  return { text: ignore ? `${trimmed} ON CONFLICT DO NOTHING` : trimmed, names: names.length > 0 ? names : null };
}

/** Positional values for a translated statement (better-sqlite3's calling convention). */
export function bindValues(stmt: PgStatement, args: readonly unknown[]): unknown[] {
  if (stmt.names === null) return args as unknown[];
  const obj = args[0] as Record<string, unknown> | undefined;
  if (args.length !== 1 || obj === null || typeof obj !== "object")
    throw new TypeError("a statement with @name parameters takes one object");
  return stmt.names.map((k) => {
    if (!(k in obj)) throw new RangeError(`missing named parameter "${k}"`);
    return obj[k];
  });
}

const TRIGGER =
  /CREATE\s+TRIGGER\s+(\w+)\s+BEFORE\s+(UPDATE|DELETE)\s+ON\s+(\w+)\s+BEGIN\s+SELECT\s+RAISE\s*\(\s*ABORT\s*,\s*('(?:[^']|'')*')\s*\)\s*;\s*END\s*;/gi;

export function translateDdl(sql: string): string {
  // Triggers first, whole: their bodies hold literals and a `;` the column rules must not see.
  const withTriggers = sql.replace(
    TRIGGER,
    (_m, name: string, op: string, table: string, message: string) =>
      `CREATE FUNCTION ${name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION ${message}; END $$;\n` +
      `CREATE TRIGGER ${name} BEFORE ${op.toUpperCase()} ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}_fn();`,
  );
  return chunks(withTriggers)
    .map((ch) =>
      ch.code
        ? ch.text
            .replace(
              /\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b/gi,
              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            )
            .replace(/\bINTEGER\b/gi, "BIGINT")
            .replace(/\bREAL\b/gi, "DOUBLE PRECISION")
            .replace(/\bBLOB\b/gi, "BYTEA")
            .replace(/\bTEXT\b/gi, 'TEXT COLLATE "C"')
            .replace(/\)\s*WITHOUT\s+ROWID\b/gi, ")")
        : ch.text,
    )
    .join("");
}
