import { z } from "zod";
import { ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "../schemas/common.js";
import {
  PendingReleaseListSchema,
  PendingReleaseViewSchema,
  SignatureFileSchema,
  SignatureSubmitResultSchema,
} from "../schemas/release-signing.js";
import { SignatureSchema } from "../schemas/trust.js";
import { defineRoute } from "./contract.js";

/** Offline release signing (docs/security.md): what to sign, and signature uploads. */

/** A signature upload is a signature file as `fleetctl release sign` writes it. */
export const SignatureUploadSchema = SignatureFileSchema;

/** A variant's manifest: the unsigned manifest while it waits for signatures, the signed envelope once published. */
export const VariantManifestSchema = z.object({
  pendingSignature: z.boolean(),
  pendingId: Sha256Schema.nullable(),
  manifest: z.record(z.string(), z.unknown()),
  /** The signed envelope (published variants only). */
  envelope: z
    .looseObject({ signed: z.record(z.string(), z.unknown()), signatures: z.array(SignatureSchema) })
    .optional(),
});

const PendingParams = z.object({ id: Sha256Schema });
const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });

export const releaseRoutes = {
  listPendingReleases: defineRoute({
    operationId: "listPendingReleases",
    method: "GET",
    path: "/v1/releases/pending",
    tag: "releases",
    summary: "Releases waiting for offline signatures, with what each still needs",
    responses: { 200: PendingReleaseListSchema },
  }),
  getPendingRelease: defineRoute({
    operationId: "getPendingRelease",
    method: "GET",
    path: "/v1/releases/pending/:id",
    tag: "releases",
    summary: "One pending release: the manifest to sign and its signature status",
    params: PendingParams,
    responses: { 200: PendingReleaseViewSchema },
  }),
  submitPendingSignatures: defineRoute({
    operationId: "submitPendingSignatures",
    method: "POST",
    path: "/v1/releases/pending/:id/signatures",
    tag: "releases",
    summary: "Upload signatures for a pending release: 200 when it is published, 202 while more are needed",
    params: PendingParams,
    body: SignatureUploadSchema,
    responses: { 200: SignatureSubmitResultSchema, 202: SignatureSubmitResultSchema },
  }),
  getVariantManifest: defineRoute({
    operationId: "getVariantManifest",
    method: "GET",
    path: "/v1/models/:name/versions/:version/manifest",
    tag: "releases",
    summary: "A variant's manifest: unsigned while pending, the signed envelope once published",
    params: VersionParams,
    query: z.object({ variant: VariantSchema.default("fp32") }),
    responses: { 200: VariantManifestSchema },
  }),
  submitVariantSignatures: defineRoute({
    operationId: "submitVariantSignatures",
    method: "POST",
    path: "/v1/models/:name/versions/:version/variants/:variant/signatures",
    tag: "releases",
    summary: "Upload signatures for a variant waiting for them: 200 when published, 202 while more are needed",
    params: VersionParams.extend({ variant: VariantSchema }),
    body: SignatureUploadSchema,
    responses: { 200: SignatureSubmitResultSchema, 202: SignatureSubmitResultSchema },
  }),
} as const;
