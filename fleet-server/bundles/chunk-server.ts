import { type FileHandle, open } from "node:fs/promises";
import { encodeChunkFrame } from "../../shared/chunk-frame.js";
import { chunkTraceActive, traceChunk, traceNow } from "../../shared/chunk-trace.js";
import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { type ChunkHeader, type ChunkRequest, ChunkRequestSchema } from "../../shared/schemas/chunks.js";
import type { SignedDesiredState } from "../../shared/schemas/desired-state.js";
import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";
import type { DeviceRepo } from "../store/device-repo.js";
import type { BlobStore } from "./bundle-store.js";

export interface ChunkServerDeps {
  log: Logger;
  clock: Clock;
  topics: Topics;
  transport: Transport;
  blobs: BlobStore;
  devices: DeviceRepo;
  /** Per-device bandwidth cap for chunk replies; undefined = unlimited. */
  bandwidthBytesPerSec?: number;
}

/** How long an idle bundle fd stays open: long enough to span one download's request window. */
const FD_IDLE_MS = 30_000;

interface OpenBundle {
  fh: Promise<{ fh: FileHandle; size: number }>;
  timer: { cancel(): void } | null;
}

/** Bundles named by the device's current desired state — the only ones it may pull. */
export function assignedBundles(desired: SignedDesiredState | null): Set<string> {
  // The store decoded the stored envelope with `SignedDesiredStateSchema`.
  return new Set((desired?.signed.assignments ?? []).map((a) => a.bundle.sha256));
}

/**
 * Serves `chunks/req` → `chunks/res` (architecture.md §4 pull protocol). Stateless per request, so a
 * device resumes simply by asking for the offsets it still lacks.
 */
export function createChunkServer(deps: ChunkServerDeps) {
  const { log, clock, topics, transport, blobs, devices } = deps;
  const fds = new Map<string, OpenBundle>();
  const served = new Map<string, number>();
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

  function acquire(sha256: string): Promise<{ fh: FileHandle; size: number }> {
    let entry = fds.get(sha256);
    if (!entry) {
      const fh = open(blobs.bundlePath(sha256), "r").then(async (h) => ({ fh: h, size: (await h.stat()).size }));
      entry = { fh, timer: null };
      fds.set(sha256, entry);
      fh.catch(() => fds.delete(sha256));
    }
    const e = entry;
    e.timer?.cancel();
    e.timer = clock.setTimeout(() => {
      fds.delete(sha256);
      e.fh.then(({ fh }) => fh.close()).catch(() => {});
    }, FD_IDLE_MS);
    return e.fh;
  }

  async function reply(deviceId: string, header: ChunkHeader, bytes: Uint8Array): Promise<void> {
    await transport.publish(topics.device(deviceId, "chunks/res"), encodeChunkFrame(header, bytes), {
      qos: 1,
      retain: false,
    });
  }

  async function serve(deviceId: string, req: ChunkRequest, tIn: number, tParsed: number): Promise<void> {
    const fail = (code: string, message: string, size = 0) =>
      reply(
        deviceId,
        { reqId: req.reqId, bundle: req.bundle, offset: req.offset, length: 0, size, error: { code, message } },
        new Uint8Array(0),
      );

    const device = devices.get(deviceId);
    if (!device || !assignedBundles(device.desired).has(req.bundle)) {
      return fail("FORBIDDEN", `bundle ${req.bundle} is not assigned to device ${deviceId}`);
    }
    const tAuthorized = tIn > 0 ? traceNow() : 0;
    if (!(await blobs.bundleExists(req.bundle))) return fail("NOT_FOUND", `bundle ${req.bundle} not found`);
    const { fh, size } = await acquire(req.bundle);
    if (req.offset >= size) {
      return fail("RANGE_NOT_SATISFIABLE", `offset ${req.offset} is beyond the bundle size ${size}`, size);
    }
    const length = Math.min(req.length, size - req.offset);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, req.offset);
    const bytes = buf.subarray(0, bytesRead);
    const tRead = tIn > 0 ? traceNow() : 0;
    await pace(deviceId, bytes.length);
    served.set(deviceId, (served.get(deviceId) ?? 0) + bytes.length);
    const tPublish = tIn > 0 ? traceNow() : 0;
    await reply(
      deviceId,
      { reqId: req.reqId, bundle: req.bundle, offset: req.offset, length: bytes.length, size },
      bytes,
    );
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
    /** MQTT handler for `{prefix}/d/{id}/chunks/req`. Never throws. */
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
        return void log.warn({ deviceId, issues: parsed.error.issues.slice(0, 3) }, "chunk request invalid; dropped");
      }
      serve(deviceId, parsed.data, tIn, tIn > 0 ? traceNow() : 0).catch((err: unknown) =>
        log.error({ err, deviceId }, "chunk request failed"),
      );
    },
    /** Payload bytes served to one device over MQTT since start (used to check resume). */
    bytesServed(deviceId: string): number {
      return served.get(deviceId) ?? 0;
    },
    async close(): Promise<void> {
      const entries = [...fds.values()];
      fds.clear();
      for (const e of entries) {
        e.timer?.cancel();
        await e.fh.then(({ fh }) => fh.close()).catch(() => {});
      }
    },
  };
}
export type ChunkServer = ReturnType<typeof createChunkServer>;
