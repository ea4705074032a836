import type { z } from "zod";
import type { ErrorCode } from "../../shared/errors.js";
import { EnrollDeviceRequestSchema } from "../../shared/http/devices.js";

export type EnrollInput = z.output<typeof EnrollDeviceRequestSchema>;

/** One entry of a bulk enrollment after the checks that need no I/O: enrolled next, or refused now. */
export type ImportPlanEntry =
  | { index: number; ok: true; device: EnrollInput }
  | { index: number; ok: false; id: string | null; code: ErrorCode; message: string };

function idOf(raw: unknown): string | null {
  const id = (raw as { id?: unknown } | null)?.id;
  return typeof id === "string" ? id : null;
}

/**
 * Pure: checks each entry on its own (schema, taken id, an id listed twice in the same batch), so
 * one bad line never refuses its neighbours. The first of two entries with the same id wins; the
 * second is a CONFLICT naming the first's index.
 */
export function planImport(entries: readonly unknown[], exists: (id: string) => boolean): ImportPlanEntry[] {
  const firstAt = new Map<string, number>();
  return entries.map((raw, index): ImportPlanEntry => {
    const parsed = EnrollDeviceRequestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
      return {
        index,
        ok: false,
        id: idOf(raw),
        code: "VALIDATION_FAILED",
        message: `${where}${issue?.message ?? "invalid"}`,
      };
    }
    const id = parsed.data.id;
    const seen = firstAt.get(id);
    if (seen !== undefined) {
      return {
        index,
        ok: false,
        id,
        code: "CONFLICT",
        message: `device ${id} is listed twice (first at index ${seen})`,
      };
    }
    firstAt.set(id, index);
    if (exists(id)) return { index, ok: false, id, code: "CONFLICT", message: `device ${id} already exists` };
    return { index, ok: true, device: parsed.data };
  });
}
