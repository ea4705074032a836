/**
 * Pure: the device CSV of `fleetctl devices import` (issue 14). A header line names the columns:
 * `id` (required), `profile` and `tags` (optional; `key=value` pairs separated by `;`). Fields follow
 * RFC 4180 (double quotes around a field holding `,` or `"`, a quote doubled inside). Empty lines and
 * lines starting with `#` are skipped. Each line is judged on its own: a bad one becomes an error with
 * its 1-based line number and a stable code, and the others still go to the server.
 */

export interface CsvDevice {
  line: number;
  device: { id: string; profile?: string; tags?: Record<string, string> };
}

/** `CSV_SYNTAX`: the line cannot be split into fields; `CSV_COLUMNS`: wrong field count; `CSV_TAGS`: a tag is not key=value. */
export type CsvErrorCode = "CSV_HEADER" | "CSV_SYNTAX" | "CSV_COLUMNS" | "CSV_TAGS";

export interface CsvLineError {
  line: number;
  code: CsvErrorCode;
  message: string;
}

const KNOWN = new Set(["id", "profile", "tags"]);

/** Splits one line into fields; null when a quote is not closed or stray text follows a closing quote. */
export function splitCsvLine(text: string): string[] | null {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let value = "";
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q === -1) return null;
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === text.length) return fields;
      if (text[i] !== ",") return null;
      i++;
    } else {
      const comma = text.indexOf(",", i);
      const value = comma === -1 ? text.slice(i) : text.slice(i, comma);
      if (value.includes('"')) return null;
      fields.push(value);
      if (comma === -1) return fields;
      i = comma + 1;
    }
  }
}

function parseTags(text: string): Record<string, string> | string {
  const tags: Record<string, string> = {};
  for (const pair of text.split(";")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) return `tag "${pair}" is not key=value`;
    tags[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return tags;
}

export function parseDeviceCsv(text: string): { devices: CsvDevice[]; errors: CsvLineError[] } {
  const lines = text.split(/\r?\n/);
  const devices: CsvDevice[] = [];
  const errors: CsvLineError[] = [];
  let columns: string[] | null = null;
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.trim() === "" || raw.startsWith("#")) continue;
    const fields = splitCsvLine(raw);
    if (!columns) {
      const names = fields?.map((f) => f.trim().toLowerCase()) ?? [];
      const unknown = names.filter((n) => !KNOWN.has(n));
      if (!fields || !names.includes("id") || unknown.length > 0 || new Set(names).size !== names.length) {
        errors.push({
          line,
          code: "CSV_HEADER",
          message: `the first line must name the columns: id (required), profile, tags${unknown.length > 0 ? `; unknown: ${unknown.join(", ")}` : ""}`,
        });
        return { devices, errors };
      }
      columns = names;
      continue;
    }
    if (!fields) {
      errors.push({ line, code: "CSV_SYNTAX", message: "unbalanced or misplaced double quote" });
      continue;
    }
    if (fields.length !== columns.length) {
      errors.push({
        line,
        code: "CSV_COLUMNS",
        message: `${fields.length} fields, the header names ${columns.length}`,
      });
      continue;
    }
    const device: CsvDevice["device"] = { id: "" };
    let bad: string | null = null;
    for (const [c, name] of columns.entries()) {
      const value = fields[c]!.trim();
      if (name === "id") device.id = value;
      else if (name === "profile" && value !== "") device.profile = value;
      else if (name === "tags") {
        const tags = parseTags(value);
        if (typeof tags === "string") bad = tags;
        else if (Object.keys(tags).length > 0) device.tags = tags;
      }
    }
    if (bad !== null) errors.push({ line, code: "CSV_TAGS", message: bad });
    else devices.push({ line, device });
  }
  if (!columns) errors.push({ line: 1, code: "CSV_HEADER", message: "no header line (id,profile,tags)" });
  return { devices, errors };
}
