import { EdgeFleetError } from "./errors.js";
import { type ChunkHeader, ChunkHeaderSchema } from "./schemas/chunks.js";

/**
 * `chunks/res` binary frame: [u32 BE header length][UTF-8 JSON header][chunk bytes].
 * Binary payload avoids base64's 33% overhead on bulk data (architecture.md §4).
 */
const MAX_HEADER = 4096;

/**
 * QoS of `chunks/req` and `chunks/res` (docs/protocol.md, "Chunk pull protocol"): 0. The pull protocol
 * is its own acknowledgement: every request has a reqId, a timeout and retries, and progress is
 * persisted by the device, so a lost request or frame costs one re-request. QoS 1 added a PUBACK per
 * packet on both legs and made the broker keep every 128 KiB frame in flight, and bought nothing:
 * the sessions are clean, so what was in flight when a link dropped is discarded either way.
 */
export const CHUNK_QOS = 0 as const;

export function encodeChunkFrame(header: ChunkHeader, bytes: Uint8Array): Buffer {
  const head = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(head.length, 0);
  return Buffer.concat([len, head, bytes]);
}

export function decodeChunkFrame(frame: Buffer): { header: ChunkHeader; bytes: Buffer } {
  if (frame.length < 4) throw new EdgeFleetError("CHUNK_INVALID", "chunk frame shorter than its length prefix");
  const headLen = frame.readUInt32BE(0);
  if (headLen > MAX_HEADER || 4 + headLen > frame.length) {
    throw new EdgeFleetError("CHUNK_INVALID", `chunk frame header length ${headLen} out of range`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(frame.subarray(4, 4 + headLen).toString("utf8"));
  } catch {
    throw new EdgeFleetError("CHUNK_INVALID", "chunk frame header is not JSON");
  }
  const parsed = ChunkHeaderSchema.safeParse(raw);
  if (!parsed.success) throw new EdgeFleetError("CHUNK_INVALID", `chunk frame header invalid: ${parsed.error.message}`);
  const bytes = frame.subarray(4 + headLen);
  if (bytes.length !== parsed.data.length) {
    throw new EdgeFleetError(
      "CHUNK_INVALID",
      `chunk frame carries ${bytes.length} bytes, header says ${parsed.data.length}`,
    );
  }
  return { header: parsed.data, bytes };
}
