import type { Socket } from "node:net";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import { peerOf } from "./peer-credentials.js";
import type { ShmRegistry } from "./shm-regions.js";
import { NO_REGIONS, type RegionAccess, regionsOf } from "./v2-shm.js";

/**
 * Triton's system shared-memory extension over the agent socket (issue 13, docs/protocol.md
 * "Shared memory"): status, register, unregister. Every call acts on the caller's own regions, the
 * caller being the uid the kernel reports for the connection.
 */
const RegisterSchema = z
  .object({
    key: z.string().min(1).max(256),
    offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    byte_size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  })
  .strict();

const NameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, "letters, digits and . _ : - only");

/** The caller's uid, or a FORBIDDEN error saying why it cannot be known. */
function callerUid(socket: Socket): number {
  const peer = peerOf(socket);
  if (!peer)
    throw new EdgeFleetError(
      "FORBIDDEN",
      "shared memory needs the caller's socket credentials, which this agent cannot read (peer-credentials addon not built)",
    );
  return peer.uid;
}

function regionName(raw: string): string {
  const parsed = NameSchema.safeParse(raw);
  if (!parsed.success) throw new EdgeFleetError("BAD_REQUEST", `region name: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** The regions an infer request may name: the caller's, looked up only if the request names one. */
export function callerRegions(registry: ShmRegistry | null, req: FastifyRequest): RegionAccess {
  // The common case (no region registered by anyone) costs nothing per request: an unknown region
  // is refused by NO_REGIONS with the same message the registry would give.
  if (!registry || registry.empty) return NO_REGIONS;
  let access: RegionAccess | undefined;
  const resolve = () => {
    if (access) return access;
    const peer = peerOf(req.raw.socket);
    access = peer ? regionsOf(registry, peer.uid) : NO_REGIONS;
    return access;
  };
  return {
    read: (...a) => resolve().read(...a),
    check: (...a) => resolve().check(...a),
    write: (...a) => resolve().write(...a),
  };
}

export function registerShmRoutes(server: FastifyInstance, registry: ShmRegistry): void {
  server.get("/v2/systemsharedmemory/status", async (req) => registry.status(callerUid(req.raw.socket)));
  server.get<{ Params: { name: string } }>("/v2/systemsharedmemory/region/:name/status", async (req) =>
    registry.status(callerUid(req.raw.socket), regionName(req.params.name)),
  );
  server.post<{ Params: { name: string } }>("/v2/systemsharedmemory/region/:name/register", async (req) => {
    const uid = callerUid(req.raw.socket);
    const name = regionName(req.params.name);
    const parsed = RegisterSchema.safeParse(req.body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
      throw new EdgeFleetError("BAD_REQUEST", `invalid register request: ${issues.join("; ")}`);
    }
    registry.register(uid, name, { key: parsed.data.key, offset: parsed.data.offset, byteSize: parsed.data.byte_size });
    return {};
  });
  server.post<{ Params: { name: string } }>("/v2/systemsharedmemory/region/:name/unregister", async (req) => {
    registry.unregister(callerUid(req.raw.socket), regionName(req.params.name));
    return {};
  });
  server.post("/v2/systemsharedmemory/unregister", async (req) => {
    registry.unregister(callerUid(req.raw.socket));
    return {};
  });
}
