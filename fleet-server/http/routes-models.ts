import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { ModelNameSchema, SemverSchema, Sha256Schema } from "../../shared/schemas/common.js";
import { assignedBundles } from "../bundles/chunk-server.js";
import { parseRange } from "../bundles/range.js";
import { CreateModelRequestSchema } from "../registry/model-service.js";
import type { CallerOf, HttpDeps } from "./app.js";
import { access } from "./route-access.js";
import { parseInput } from "./validate.js";

const NameParams = z.object({ name: ModelNameSchema });
const VersionParams = z.object({ name: ModelNameSchema, version: SemverSchema });
const BundleParams = z.object({ sha256: Sha256Schema });
const BuildParams = z.object({ id: z.string().min(1).max(64) });
const CreateModelQuery = z.object({ async: z.enum(["1", "true", "0", "false"]).optional() });

/** `?async=1` or `Prefer: respond-async` (RFC 7240) asks for a tracked build instead of waiting. */
export function wantsAsync(flag: string | undefined, prefer: string | string[] | undefined): boolean {
  if (flag === "1" || flag === "true") return true;
  if (flag === "0" || flag === "false") return false;
  const values = (Array.isArray(prefer) ? prefer : [prefer ?? ""]).flatMap((v) => v.split(","));
  return values.some((v) => v.split(";")[0]!.trim().toLowerCase() === "respond-async");
}

export function registerModelRoutes(app: FastifyInstance, deps: HttpDeps, callerOf: CallerOf): void {
  app.post("/v1/uploads", access("operator"), async (req, reply) => {
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

  app.post("/v1/models", access("operator"), async (req, reply) => {
    const body = parseInput(CreateModelRequestSchema, req.body, "body");
    const { async: asyncFlag } = parseInput(CreateModelQuery, req.query, "query");
    if (wantsAsync(asyncFlag, req.headers.prefer)) {
      // Cheap refusals (bad body, existing version, unknown upload) still come back at once.
      await deps.models.precheck(body);
      const build = deps.builds.start((onProgress) => deps.models.create(body, onProgress), {
        name: body.name,
        version: body.version,
      });
      return reply
        .status(202)
        .header("Location", `/v1/model-builds/${build.id}`)
        .header("Preference-Applied", "respond-async")
        .send({ buildId: build.id, status: build.status, links: { self: `/v1/model-builds/${build.id}` } });
    }
    return reply.status(201).send(await deps.models.create(body));
  });
  app.get("/v1/model-builds/:id", access("viewer"), async (req) =>
    deps.builds.get(parseInput(BuildParams, req.params, "params").id),
  );
  app.get("/v1/models", access("viewer"), async () => deps.models.list());
  app.get("/v1/models/:name", access("viewer"), async (req) =>
    deps.models.get(parseInput(NameParams, req.params, "params").name),
  );
  app.get("/v1/models/:name/versions/:version", access("viewer"), async (req) => {
    const p = parseInput(VersionParams, req.params, "params");
    return deps.models.getVersion(p.name, p.version);
  });

  app.route({
    method: ["GET", "HEAD"],
    url: "/v1/bundles/:sha256",
    exposeHeadRoute: false,
    ...access("device-bundle"),
    handler: async (req, reply) => {
      const { sha256 } = parseInput(BundleParams, req.params, "params");
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
      return reply.send(createReadStream(path, range ? { start: range.start, end: range.end } : {}));
    },
  });
}
