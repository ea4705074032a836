import { z } from "zod";

export const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters (SHA-256)");

/** Device ids appear inside MQTT topics, so the MQTT wildcard and level characters are forbidden (architecture.md §4). */
export const DeviceIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "device id may hold letters, digits and . _ : - (no '+', '#', '/')");

export const ModelNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, "model name: lowercase letters, digits, '.', '_' and '-'");

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
export const SemverSchema = z.string().regex(SEMVER, "must be a semantic version (e.g. 1.2.0)");

export const IsoTimeSchema = z.iso.datetime({ offset: true });

export const VariantSchema = z.enum(["fp32", "int8"]);
export type Variant = z.infer<typeof VariantSchema>;

/** KServe v2 datatypes (Open Inference Protocol). */
export const DatatypeSchema = z.enum([
  "BOOL",
  "UINT8",
  "UINT16",
  "UINT32",
  "UINT64",
  "INT8",
  "INT16",
  "INT32",
  "INT64",
  "FP16",
  "FP32",
  "FP64",
  "BYTES",
]);
export type Datatype = z.infer<typeof DatatypeSchema>;

export const ErrorPayloadSchema = z.object({
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional(),
});
