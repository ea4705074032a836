import { open, readFile } from "node:fs/promises";
import { IMPORT_BATCH_MAX } from "../../shared/http/devices.js";
import { type ApiClient, ApiError } from "./api-client.js";
import { type CsvLineError, parseDeviceCsv } from "./device-csv.js";
import { createProgressLine } from "./progress.js";

/** One refused line of an import: from the CSV itself (`CSV_*`) or from the server (its error code). */
export interface ImportLineError {
  line: number;
  id: string | null;
  code: string;
  message: string;
}

export interface ImportSummary {
  enrolled: number;
  errors: ImportLineError[];
}

/**
 * `fleetctl devices import <csv> --out <file>`: parses the CSV (bad lines reported, never sent), sends
 * the rest in batches of at most `IMPORT_BATCH_MAX`, and appends each enrolled device's `id,password`
 * to `--out` (created mode 0600, an existing file refused) as soon as its batch answers, since the
 * server shows a password only once. A batch the server refuses as a whole (unreachable, 401) stops
 * the import: the devices before it are enrolled and written, the ones after are not sent.
 */
export async function importDevices(
  api: ApiClient,
  csvPath: string,
  outPath: string,
  opts: { batch?: number; progress?: boolean } = {},
): Promise<ImportSummary> {
  const { devices, errors: csvErrors } = parseDeviceCsv(await readFile(csvPath, "utf8"));
  const errors: ImportLineError[] = csvErrors.map((e: CsvLineError) => ({ ...e, id: null }));
  if (csvErrors.some((e) => e.code === "CSV_HEADER")) return { enrolled: 0, errors };
  let out: Awaited<ReturnType<typeof open>>;
  try {
    out = await open(outPath, "wx", 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" ? "it already exists (refusing to overwrite secrets)" : (err as Error).message;
    throw new ApiError(0, "BAD_REQUEST", `--out ${outPath}: ${why}`);
  }
  const size = Math.min(Math.max(1, opts.batch ?? IMPORT_BATCH_MAX), IMPORT_BATCH_MAX);
  const progress = opts.progress === false ? null : createProgressLine();
  let enrolled = 0;
  try {
    await out.chmod(0o600);
    await out.writeFile("id,password\n", "utf8");
    for (let at = 0; at < devices.length; at += size) {
      const batch = devices.slice(at, at + size);
      const res = await api.importDevices({ devices: batch.map((d) => d.device) });
      const lines: string[] = [];
      for (const r of res.results) {
        const src = batch[r.index];
        if (!src) continue;
        if (r.ok) lines.push(`${r.id},${r.password}\n`);
        else errors.push({ line: src.line, id: r.id, code: r.error.code, message: r.error.message });
      }
      await out.writeFile(lines.join(""), "utf8");
      await out.sync();
      enrolled += res.enrolled;
      const sent = Math.min(at + size, devices.length);
      progress?.update(`imported ${sent}/${devices.length} (${enrolled} enrolled)`, sent / devices.length);
    }
  } finally {
    await out.close();
  }
  progress?.done(`enrolled ${enrolled} of ${devices.length + csvErrors.length} lines; credentials in ${outPath}`);
  errors.sort((a, b) => a.line - b.line);
  return { enrolled, errors };
}
