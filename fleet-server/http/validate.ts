import type { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";

/** Formats zod issues as `where.path: message; ...` so the caller sees exactly what is wrong. */
export function describeIssues(where: string, error: z.ZodError): string {
  return error.issues
    .slice(0, 10)
    .map((i) => {
      const path = i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
      return `${where}${path}: ${i.message}`;
    })
    .join("; ");
}

/** Parses untrusted input (body, params, query) or throws VALIDATION_FAILED. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new EdgeFleetError("VALIDATION_FAILED", describeIssues(where, r.error), {
      details: {
        issues: r.error.issues.slice(0, 10).map((i) => ({ path: i.path.map(String), message: i.message })),
      },
    });
  }
  return r.data;
}
