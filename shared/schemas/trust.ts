import { z } from "zod";
import { IsoTimeSchema } from "./common.js";

export const KeyIdSchema = z.string().regex(/^[0-9a-f]{64}$/, "key id is a SHA-256 hex digest");

export const PublicKeySchema = z.object({
  keytype: z.literal("ed25519"),
  scheme: z.literal("ed25519"),
  keyval: z.object({ public: z.string().regex(/^[0-9a-f]{64}$/, "ed25519 public key: 32 bytes hex") }),
});
export type PublicKey = z.infer<typeof PublicKeySchema>;

export const SignatureSchema = z.object({
  keyid: KeyIdSchema,
  sig: z.string().regex(/^[0-9a-f]{128}$/, "ed25519 signature: 64 bytes hex"),
});
export type Signature = z.infer<typeof SignatureSchema>;

/** `{ signed, signatures }` over RFC 8785 canonical JSON of `signed` (architecture.md §3). */
export function envelopeSchema<T extends z.ZodType>(signed: T) {
  return z.object({
    signed,
    signatures: z.array(SignatureSchema).max(32),
  });
}
export interface Envelope<T> {
  signed: T;
  signatures: Signature[];
}

export const RoleNameSchema = z.enum(["root", "release", "director"]);
export type RoleName = z.infer<typeof RoleNameSchema>;

export const RoleSchema = z.object({
  keyids: z.array(KeyIdSchema).min(1).max(16),
  threshold: z.number().int().min(1),
});
export type Role = z.infer<typeof RoleSchema>;

export const RootSchema = z
  .object({
    _type: z.literal("root"),
    version: z.number().int().min(1),
    expires: IsoTimeSchema,
    keys: z.record(KeyIdSchema, PublicKeySchema),
    roles: z.object({ root: RoleSchema, release: RoleSchema, director: RoleSchema }),
  })
  .superRefine((root, ctx) => {
    for (const [name, role] of Object.entries(root.roles)) {
      if (role.threshold > role.keyids.length) {
        ctx.addIssue({ code: "custom", message: `role ${name}: threshold exceeds number of keys` });
      }
      for (const id of role.keyids) {
        if (!root.keys[id]) ctx.addIssue({ code: "custom", message: `role ${name}: key ${id} not in keys` });
      }
    }
  });
export type Root = z.infer<typeof RootSchema>;
export const SignedRootSchema = envelopeSchema(RootSchema);
