import { z } from "zod";
import { Sha256Schema } from "./common.js";
import { KeyIdSchema, SignatureSchema } from "./trust.js";

/**
 * Offline release signing over HTTP (docs/security.md): what the fleet server answers about
 * pending releases and signature uploads. The server builds these values; fleetctl parses them.
 */

/** How far a pending release is from its release-role threshold, under the server's current root. */
export const SignatureStatusSchema = z.object({
  /** Release signatures required (the release role's threshold). */
  required: z.number().int().min(1),
  /** Valid signatures collected so far, one per key id. */
  valid: z.number().int().min(0),
  /** How many more are needed (0: enough). */
  needed: z.number().int().min(0),
  /** Key ids that signed. */
  signedBy: z.array(KeyIdSchema),
  /** Release key ids that have not signed yet (any `needed` of them will do). */
  missing: z.array(KeyIdSchema),
});
export type SignatureStatus = z.infer<typeof SignatureStatusSchema>;

/** Which release: the fields a pending-release listing and a signature upload answer share. */
const ReleaseIdentitySchema = z.object({
  /** SHA-256 of the manifest's RFC 8785 canonical JSON: exactly what is signed. */
  id: Sha256Schema,
  kind: z.enum(["upload", "re-release"]),
  name: z.string(),
  version: z.string(),
  variant: z.string(),
  releaseCounter: z.number().int(),
});

export const PendingReleaseViewSchema = ReleaseIdentitySchema.extend({
  originSha256: Sha256Schema.nullable(),
  createdAt: z.string(),
  signatures: SignatureStatusSchema,
  /** The manifest to sign, kept opaque here: re-serializing it through a schema could change its bytes. */
  manifest: z.record(z.string(), z.unknown()),
});
export type PendingReleaseView = z.infer<typeof PendingReleaseViewSchema>;

export const PendingReleaseListSchema = z.object({ pending: z.array(PendingReleaseViewSchema) });

/** Answer to a signature upload: `200` when it published the release, `202` while more are needed. */
export const SignatureSubmitResultSchema = ReleaseIdentitySchema.extend({
  published: z.boolean(),
  /** Valid signatures this upload added (ones already collected do not count twice). */
  added: z.number().int().min(0),
  signatures: SignatureStatusSchema,
  bundle: z.object({ sha256: Sha256Schema, size: z.number().int() }).nullable(),
});
export type SignatureSubmitResult = z.infer<typeof SignatureSubmitResultSchema>;

/** A signature file as `fleetctl release sign` writes it: the manifest and at least one signature. */
export const SignatureFileSchema = z.object({
  signed: z.record(z.string(), z.unknown()),
  signatures: z.array(SignatureSchema).min(1, "no signatures: sign it first (fleetctl release sign)").max(32),
});
