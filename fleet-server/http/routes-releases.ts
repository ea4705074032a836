import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { ModelNameSchema, SemverSchema, Sha256Schema, VariantSchema } from "../../shared/schemas/common.js";
import type { SignatureSubmitResult } from "../../shared/schemas/release-signing.js";
import { type ReleaseSigning, SignatureUploadSchema } from "../registry/release-signing.js";
import { access } from "./route-access.js";
import { parseInput } from "./validate.js";

const PendingParams = z.object({ id: Sha256Schema });
const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });
const VariantParams = VersionParams.extend({ variant: VariantSchema });
const ManifestQuery = z.object({ variant: VariantSchema.default("fp32") });

/** `200` when the upload published the release; `202` when its signatures were kept and more are needed. */
const submitStatus = (r: SignatureSubmitResult) => (r.published ? 200 : 202);

/** Offline release signing (docs/security.md): fetch what to sign, upload the signatures. */
export function registerReleaseRoutes(app: FastifyInstance, signing: ReleaseSigning): void {
  app.get("/v1/releases/pending", access("viewer"), async () => signing.list());
  app.get("/v1/releases/pending/:id", access("viewer"), async (req) =>
    signing.get(parseInput(PendingParams, req.params, "params").id),
  );
  app.post("/v1/releases/pending/:id/signatures", access("operator"), async (req, reply) => {
    const { id } = parseInput(PendingParams, req.params, "params");
    const r = await signing.submit(id, parseInput(SignatureUploadSchema, req.body, "body"));
    return reply.status(submitStatus(r)).send(r);
  });
  app.get("/v1/models/:name/versions/:version/manifest", access("viewer"), async (req) => {
    const p = parseInput(VersionParams, req.params, "params");
    const q = parseInput(ManifestQuery, req.query, "query");
    return signing.manifestOf(p.name, p.version, q.variant);
  });
  app.post(
    "/v1/models/:name/versions/:version/variants/:variant/signatures",
    access("operator"),
    async (req, reply) => {
      const p = parseInput(VariantParams, req.params, "params");
      const body = parseInput(SignatureUploadSchema, req.body, "body");
      const r = await signing.submitForVariant(p.name, p.version, p.variant, body);
      return reply.status(submitStatus(r)).send(r);
    },
  );
}
