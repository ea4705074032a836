import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline, type Readable, Transform } from "node:stream";
import type { FastifyInstance } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import { tagsFromQuery } from "../../shared/http/devices.js";
import { modelRoutes, VersionViewSchema } from "../../shared/http/models.js";
import { assignedBundles } from "../bundles/chunk-server.js";
import { parseRange } from "../bundles/range.js";
import { summariseFeedback } from "../registry/feedback-summary.js";
import { summariseBundleSamples } from "../registry/sample-summary.js";
import type { CallerOf, HttpDeps } from "./app.js";
import { contractRoute } from "./contract-route.js";

/** `?async=1` or `Prefer: respond-async` (RFC 7240) asks for a tracked build instead of waiting. */
export function wantsAsync(flag: string | undefined, prefer: string | string[] | undefined): boolean {
  if (flag === "1" || flag === "true") return true;
  if (flag === "0" || flag === "false") return false;
  const values = (Array.isArray(prefer) ? prefer : [prefer ?? ""]).flatMap((v) => v.split(","));
  return values.some((v) => v.split(";")[0]!.trim().toLowerCase() === "respond-async");
}

export function registerModelRoutes(app: FastifyInstance, deps: HttpDeps, callerOf: CallerOf): void {
  contractRoute(app, modelRoutes.upload, "operator", async ({ req, reply }) => {
    if (!req.headers["content-type"]?.startsWith("application/octet-stream")) {
      throw new EdgeFleetError("BAD_REQUEST", "uploads need Content-Type: application/octet-stream");
    }
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== "function") {
      throw new EdgeFleetError("VALIDATION_FAILED", "upload body is empty");
    }
    const declared = req.headers["content-length"] ? Number(req.headers["content-length"]) : undefined;
    const result = await deps.blobs.receiveUpload(body, deps.maxUploadBytes, declared);
    return reply.status(201).send(result);
  });

  contractRoute(app, modelRoutes.createModel, "operator", async ({ body, query, req, reply }) => {
    // The pusher is recorded once the version exists: approvals must come from someone else (issue 21).
    const caller = callerOf(req);
    const pushedBy = caller.kind === "token" ? caller.principal.actor : "unknown";
    const created = <T>(v: T): T => {
      deps.governance.recordPush(body.name, body.version, pushedBy);
      return v;
    };
    if (wantsAsync(query.async, req.headers.prefer)) {
      // Cheap refusals (bad body, existing version, unknown upload) still come back at once.
      await deps.models.precheck(body);
      const build = deps.builds.start((onProgress) => deps.models.create(body, onProgress).then(created), {
        name: body.name,
        version: body.version,
      });
      return reply
        .status(202)
        .header("Location", `/v1/model-builds/${build.id}`)
        .header("Preference-Applied", "respond-async")
        .send({ buildId: build.id, status: build.status, links: { self: `/v1/model-builds/${build.id}` } });
    }
    return reply.status(201).send(created(await deps.models.create(body)));
  });
  contractRoute(app, modelRoutes.getModelBuild, "viewer", async ({ params }) => {
    const { result, ...build } = deps.builds.get(params.id);
    // The tracker keeps any build's result as JSON; a model build's is the version view `POST /v1/models` answers.
    return result === undefined ? build : { ...build, result: VersionViewSchema.parse(result) };
  });
  contractRoute(app, modelRoutes.listModels, "viewer", async () => deps.models.list());
  contractRoute(app, modelRoutes.getModel, "viewer", async ({ params }) => deps.models.get(params.name));
  contractRoute(app, modelRoutes.getModelVersion, "viewer", async ({ params }) =>
    deps.models.getVersion(params.name, params.version),
  );

  contractRoute(app, modelRoutes.getModelVersionSamples, "viewer", async ({ params }) => {
    const v = deps.models.getVersion(params.name, params.version);
    const fp32 = v.variants.find((x) => x.variant === "fp32" && x.bundle);
    if (!fp32?.bundle) throw new EdgeFleetError("NOT_FOUND", `${params.name} ${params.version} has no fp32 bundle yet`);
    const path = deps.blobs.bundlePath(fp32.bundle.sha256);
    return { variant: "fp32" as const, bundle: fp32.bundle.sha256, samples: await summariseBundleSamples(path) };
  });

  contractRoute(app, modelRoutes.getModelFeedback, "viewer", async ({ params, query }) => {
    deps.models.get(params.name); // NOT_FOUND for an unknown model
    const tags = tagsFromQuery(query.tag);
    const devices = tags
      ? deps.deviceRepo.listPage({ limit: Number.MAX_SAFE_INTEGER, tags })
      : deps.deviceRepo.listSummaries();
    return summariseFeedback(params.name, devices);
  });

  contractRoute(
    app,
    modelRoutes.getBundle,
    "device-bundle",
    async ({ params, req, reply }) => {
      const { sha256 } = params;
      const caller = callerOf(req);
      // The hook only lets callers with credentials through; this is the second lock on the door.
      if (caller.kind === "anonymous") throw new EdgeFleetError("UNAUTHORIZED", "credentials required");
      if (caller.kind === "device") {
        const device = deps.deviceRepo.get(caller.deviceId);
        if (!device || !assignedBundles(device.desired).has(sha256)) {
          throw new EdgeFleetError("FORBIDDEN", `bundle ${sha256} is not assigned to device ${caller.deviceId}`);
        }
      }
      if (!(await deps.blobs.bundleExists(sha256))) throw new EdgeFleetError("NOT_FOUND", `bundle ${sha256} not found`);
      const path = deps.blobs.bundlePath(sha256);
      const size = (await stat(path)).size;
      const range = parseRange(req.headers.range, size);
      // Bundles are immutable (content-addressed), so the hash is a perfect strong ETag.
      reply
        .header("Accept-Ranges", "bytes")
        .header("ETag", `"${sha256}"`)
        .header("Cache-Control", "private, max-age=31536000, immutable")
        .type("application/octet-stream");
      if (range) {
        reply
          .status(206)
          .header("Content-Range", `bytes ${range.start}-${range.end}/${size}`)
          .header("Content-Length", range.end - range.start + 1);
      } else {
        reply.status(200).header("Content-Length", size);
      }
      if (req.method === "HEAD") return reply.send();
      const file = createReadStream(path, range ? { start: range.start, end: range.end } : {});
      const deliveries = deps.deliveries;
      if (!deliveries) return reply.send(file);
      // Bytes delivered (issue 22, cost per prediction): counted as they are handed to the response.
      const who = caller.kind === "device" ? caller.deviceId : "";
      const counted = new Transform({
        transform(chunk: Buffer, _enc, done) {
          deliveries.add(sha256, who, "http", chunk.length);
          done(null, chunk);
        },
      });
      pipeline(file, counted, () => {}); // errors reach the response through `counted` being destroyed
      return reply.send(counted);
    },
    { exposeHeadRoute: false },
  );
}
