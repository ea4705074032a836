import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "../../shared/schemas/common.js";
import { type ReleaseSigning, SignatureUploadSchema } from "../registry/release-signing.js";
import { parseInput } from "./validate.js";

const PendingParams = z.object({ id: Sha256Schema });
const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });
const VariantParams = VersionParams.extend({ variant: VariantSchema });
const ManifestQuery = z.object({ variant: VariantSchema.default("fp32") });

/** Offline release signing (docs/security.md): fetch what to sign, upload the signatures. */
export function registerReleaseRoutes(app: FastifyInstance, signing: ReleaseSigning): void {
  app.get("/v1/releases/pending", async () => signing.list());
  app.get("/v1/releases/pending/:id", async (req) => signing.get(parseInput(PendingParams, req.params, "params").id));
  app.post("/v1/releases/pending/:id/signatures", async (req) => {
    const { id } = parseInput(PendingParams, req.params, "params");
    return signing.submit(id, parseInput(SignatureUploadSchema, req.body, "body"));
  });
  app.get("/v1/models/:name/versions/:version/manifest", async (req) => {
    const p = parseInput(VersionParams, req.params, "params");
    const q = parseInput(ManifestQuery, req.query, "query");
    return signing.manifestOf(p.name, p.version, q.variant);
  });
  app.post("/v1/models/:name/versions/:version/variants/:variant/signatures", async (req) => {
    const p = parseInput(VariantParams, req.params, "params");
    return signing.submitForVariant(p.name, p.version, p.variant, parseInput(SignatureUploadSchema, req.body, "body"));
  });
}
