import { channel } from "node:diagnostics_channel";
import { performance } from "node:perf_hooks";

/**
 * Per-stage timings of the chunk path (issue 17: "measure first"), published on a diagnostics channel
 * so the benchmark can subscribe without any plumbing through the server's or the agent's config.
 * Nothing is built unless someone subscribes (`hasSubscribers`), so production pays one property read
 * per chunk. All times are `performance.now()` milliseconds (one clock only within one process: the
 * bench runs server and downloader together).
 */
export type ChunkTraceEvent =
  /** Server: one request handled; `t*` are the moments each step ended. */
  | {
      kind: "serve";
      reqId: string;
      offset: number;
      /** Handler entered (the request has crossed the broker). */
      tIn: number;
      tParsed: number;
      tAuthorized: number;
      /** Bundle bytes in hand (read from disk or the hot cache). */
      tRead: number;
      /** Frame handed to MQTT. */
      tPublish: number;
      /** The publish resolved (QoS 1: broker PUBACK; QoS 0: written to the broker). */
      tSent: number;
    }
  /** Agent: request built and handed to MQTT (`t0` before encoding, `t` after the publish call). */
  | { kind: "request"; reqId: string; offset: number; t0: number; t: number }
  /** Agent: frame received (before decoding), decoded, and written at its offset. */
  | { kind: "frame"; reqId: string; offset: number; tIn: number; tDecoded: number; tWritten: number }
  /** Agent: one persist round (fdatasync, then the progress row). */
  | { kind: "persist"; t0: number; tSynced: number; tRecorded: number; bytes: number }
  /** Agent: the window could not grow because of the persisted bound (ms spent blocked). */
  | { kind: "stall"; t0: number; t1: number }
  /** Agent: final verification (SHA-256 of the whole file) and rename. */
  | { kind: "verify"; t0: number; t1: number }
  /** Agent: the window changed (adaptive rule). */
  | { kind: "window"; t: number; window: number; minRttMs: number; rateBytesPerMs: number };

const ch = channel("edgefleet:chunks");

export const traceNow = (): number => performance.now();

export function chunkTraceActive(): boolean {
  return ch.hasSubscribers;
}

export function traceChunk(event: ChunkTraceEvent): void {
  if (ch.hasSubscribers) ch.publish(event);
}

export function subscribeChunkTrace(cb: (event: ChunkTraceEvent) => void): () => void {
  const handler = (m: unknown) => cb(m as ChunkTraceEvent);
  ch.subscribe(handler);
  return () => ch.unsubscribe(handler);
}
