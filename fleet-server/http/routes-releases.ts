import type { FastifyInstance } from "fastify";
import { releaseRoutes } from "../../shared/http/releases.js";
import type { SignatureSubmitResult } from "../../shared/schemas/release-signing.js";
import type { ReleaseSigning } from "../registry/release-signing.js";
import { contractRoute } from "./contract-route.js";

/** `200` when the upload published the release; `202` when its signatures were kept and more are needed. */
const submitStatus = (r: SignatureSubmitResult) => (r.published ? 200 : 202);

/** Offline release signing (docs/security.md): fetch what to sign, upload the signatures. */
export function registerReleaseRoutes(app: FastifyInstance, signing: ReleaseSigning): void {
  contractRoute(app, releaseRoutes.listPendingReleases, "viewer", async () => signing.list());
  contractRoute(app, releaseRoutes.getPendingRelease, "viewer", async ({ params }) => signing.get(params.id));
  contractRoute(app, releaseRoutes.submitPendingSignatures, "operator", async ({ params, body, reply }) => {
    const r = await signing.submit(params.id, body);
    return reply.status(submitStatus(r)).send(r);
  });
  contractRoute(app, releaseRoutes.getVariantManifest, "viewer", async ({ params, query }) =>
    signing.manifestOf(params.name, params.version, query.variant),
  );
  contractRoute(app, releaseRoutes.submitVariantSignatures, "operator", async ({ params, body, reply }) => {
    const r = await signing.submitForVariant(params.name, params.version, params.variant, body);
    return reply.status(submitStatus(r)).send(r);
  });
}
