import { CHUNK_QOS, encodeChunkFrame } from "../../shared/chunk-frame.js";
import { chunkTraceActive, traceChunk, traceNow } from "../../shared/chunk-trace.js";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import { SHA256_HEX } from "../../shared/hash.js";
import type { Logger } from "../../shared/logger.js";
import { type ChunkHeader, type ChunkRequest, ChunkRequestSchema } from "../../shared/schemas/chunks.js";
import type { SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";
import type { DeviceRepo } from "../store/device-repo.js";
import type { BlobStore } from "./bundle-store.js";
import { createHotBundles, type HotBundlesOptions } from "./hot-bundles.js";

export interface ChunkServerDeps {
  log: Logger;
  clock: Clock;
  topics: Topics;
  transport: Transport;
  blobs: BlobStore;
  devices: DeviceRepo;
  /** Per-device bandwidth cap for chunk replies; undefined = unlimited. */
  bandwidthBytesPerSec?: number;
  /** Memory and open-file bounds of the bundles kept ready for chunk requests (hot-bundles.ts). */
  hot?: Pick<HotBundlesOptions, "maxBytes" | "maxOpen" | "idleMs">;
  /** Called with every chunk's payload bytes once published (issue 22: bundle bytes delivered). */
  onServed?: (deviceId: string, sha256: string, bytes: number) => void;
}

/**
 * How long a device's right to a bundle, once checked, is taken as given. A download asks for one
 * bundle many times a second; reading and decoding the device row (with its signed desired state)
 * for each chunk was a measurable share of serving it. An unassignment stops chunk serving within
 * this time; revocation is immediate anyway (the broker drops the device).
 */
const AUTHORIZATION_MEMO_MS = 1000;
const MAX_MEMOS = 10_000;

/** Bundles (and deltas, issue 17) named by the device's current desired state — the only ones it may pull. */
export function assignedBundles(desired: SignedDesiredState | null): Set<string> {
  // The store decoded the stored envelope with `SignedDesiredStateSchema`.
  const assignments = desired?.signed.assignments ?? [];
  return new Set([
    ...assignments.map((a) => a.bundle.sha256),
    ...assignments.flatMap((a) => (a.delta ? [a.delta.sha256] : [])),
  ]);
}

/**
 * Serves `chunks/req` → `chunks/res` (architecture.md §4 pull protocol, docs/protocol.md). Stateless
 * per request, so a device resumes simply by asking for the offsets it still lacks. Bytes come from
 * bundles verified once and kept ready (hot-bundles.ts), never re-read from scratch per request.
 */
export function createChunkServer(deps: ChunkServerDeps) {
  const { log, clock, topics, transport, blobs, devices } = deps;
  const hot = createHotBundles({ path: (sha) => blobs.bundlePath(sha), clock, log, ...(deps.hot ?? {}) });
  const served = new Map<string, number>();
  /** `${deviceId} ${bundle}` → until when the assignment check holds. */
  const authorized = new Map<string, number>();
  /** Per device: the time its link is next free under the bandwidth cap (a simple pacing schedule). */
  const linkFreeAt = new Map<string, number>();

  /** Resolves when `bytes` may be sent to `deviceId` without exceeding its bandwidth cap. */
  function pace(deviceId: string, bytes: number): Promise<void> {
    const rate = deps.bandwidthBytesPerSec;
    if (rate === undefined) return Promise.resolve();
    const now = clock.now();
    const start = Math.max(now, linkFreeAt.get(deviceId) ?? now);
    linkFreeAt.set(deviceId, start + (bytes / rate) * 1000);
    const wait = start - now;
    return wait <= 0 ? Promise.resolve() : new Promise((resolve) => clock.setTimeout(resolve, wait));
  }

  function mayPull(deviceId: string, bundle: string): boolean {
    const key = `${deviceId} ${bundle}`;
    const now = clock.now();
    if ((authorized.get(key) ?? 0) > now) return true;
    const device = devices.get(deviceId);
    if (!device || !assignedBundles(device.desired).has(bundle)) return false;
    if (authorized.size >= MAX_MEMOS) authorized.clear();
    authorized.set(key, now + AUTHORIZATION_MEMO_MS);
    return true;
  }

  async function reply(deviceId: string, header: ChunkHeader, bytes: Uint8Array): Promise<void> {
    await transport.publish(topics.device(deviceId, "chunks/res"), encodeChunkFrame(header, bytes), {
      qos: CHUNK_QOS,
      retain: false,
    });
  }

  function fail(deviceId: string, req: Pick<ChunkRequest, "reqId" | "bundle" | "offset">, err: EdgeFleetError) {
    const size = typeof err.details === "number" ? err.details : 0;
    const header = { reqId: req.reqId, bundle: req.bundle, offset: req.offset, length: 0, size };
    return reply(deviceId, { ...header, error: { code: err.code, message: err.message } }, new Uint8Array(0));
  }

  async function serve(deviceId: string, req: ChunkRequest, tIn: number, tParsed: number): Promise<void> {
    if (!mayPull(deviceId, req.bundle)) {
      throw new EdgeFleetError("FORBIDDEN", `bundle ${req.bundle} is not assigned to device ${deviceId}`);
    }
    const tAuthorized = tIn > 0 ? traceNow() : 0;
    const bundle = await hot.get(req.bundle);
    if (req.offset >= bundle.size) {
      throw new EdgeFleetError(
        "RANGE_NOT_SATISFIABLE",
        `offset ${req.offset} is beyond the bundle size ${bundle.size}`,
        // The size rides along so the device learns it (it is not secret from an assigned device).
        { details: bundle.size },
      );
    }
    const bytes = await bundle.read(req.offset, req.length);
    const tRead = tIn > 0 ? traceNow() : 0;
    await pace(deviceId, bytes.length);
    served.set(deviceId, (served.get(deviceId) ?? 0) + bytes.length);
    const tPublish = tIn > 0 ? traceNow() : 0;
    const header = {
      reqId: req.reqId,
      bundle: req.bundle,
      offset: req.offset,
      length: bytes.length,
      size: bundle.size,
    };
    await reply(deviceId, header, bytes);
    deps.onServed?.(deviceId, req.bundle, bytes.length);
    if (tIn > 0) {
      const tSent = traceNow();
      traceChunk({
        kind: "serve",
        reqId: req.reqId,
        offset: req.offset,
        tIn,
        tParsed,
        tAuthorized,
        tRead,
        tPublish,
        tSent,
      });
    }
  }

  return {
    /**
     * MQTT handler for `{prefix}/d/{id}/chunks/req`. Never throws. Every request that names a reqId
     * and a bundle gets an answer, an error frame when it cannot be served (docs/protocol.md), so the
     * device learns why instead of waiting for its timeout; only unreadable requests are dropped.
     */
    handle(deviceId: string, payload: Buffer): void {
      const tIn = chunkTraceActive() ? traceNow() : 0;
      let raw: unknown;
      try {
        raw = JSON.parse(payload.toString("utf8"));
      } catch {
        return void log.warn({ deviceId }, "chunk request is not JSON; dropped");
      }
      const parsed = ChunkRequestSchema.safeParse(raw);
      if (!parsed.success) {
        const r = raw as Partial<Record<string, unknown>> | null;
        const answerable =
          typeof r?.reqId === "string" && r.reqId.length > 0 && r.reqId.length <= 64 && typeof r.bundle === "string";
        log.warn({ deviceId, issues: parsed.error.issues.slice(0, 3), answered: answerable }, "chunk request invalid");
        if (answerable && SHA256_HEX.test(r.bundle as string)) {
          const offset = Number.isSafeInteger(r.offset) && (r.offset as number) >= 0 ? (r.offset as number) : 0;
          const issue = parsed.error.issues[0];
          const why = `chunk request invalid: ${issue ? `${issue.path.join(".")}: ${issue.message}` : "bad shape"}`;
          const req = { reqId: r.reqId as string, bundle: r.bundle as string, offset };
          fail(deviceId, req, new EdgeFleetError("BAD_REQUEST", why)).catch((err: unknown) =>
            log.warn({ err, deviceId }, "chunk error reply failed"),
          );
        }
        return;
      }
      const req = parsed.data;
      serve(deviceId, req, tIn, tIn > 0 ? traceNow() : 0).catch((err: unknown) => {
        const known = err instanceof EdgeFleetError;
        if (!known) log.error({ err, deviceId }, "chunk request failed");
        const answer = known ? err : new EdgeFleetError("INTERNAL", "chunk could not be served");
        fail(deviceId, req, answer).catch((e: unknown) => log.warn({ err: e, deviceId }, "chunk error reply failed"));
      });
    },
    /** Payload bytes served to one device over MQTT since start (used to check resume). */
    bytesServed(deviceId: string): number {
      return served.get(deviceId) ?? 0;
    },
    async close(): Promise<void> {
      await hot.close();
    },
  };
}
export type ChunkServer = ReturnType<typeof createChunkServer>;
