import { z } from "zod";
import { DeviceProfileSchema } from "../../shared/schemas/device-profile.js";

/**
 * JSON Schema for device-profiles/*.json, generated from the zod schema (the one source of truth).
 * `io: "input"` because files may omit fields that have defaults.
 */
export function profileJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(DeviceProfileSchema, { io: "input", target: "draft-2020-12" }) as Record<
    string,
    unknown
  >;
  return { ...schema, title: "EdgeFleet device profile" };
}

/** The exact bytes committed as device-profiles/schema.json. */
export function profileJsonSchemaText(): string {
  return `${JSON.stringify(profileJsonSchema(), null, 2)}\n`;
}
