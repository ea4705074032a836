import { type ChunkTraceEvent, subscribeChunkTrace } from "../../shared/chunk-trace.js";
import { percentile } from "./stats.js";

/**
 * Per-stage breakdown of MQTT chunk delivery (issue 17: "find where the time goes first"), from the
 * `edgefleet:chunks` diagnostics channel (shared/chunk-trace.ts). Server and downloader run in the
 * bench process, so their `performance.now()` stamps subtract. Per chunk, in order:
 *
 *   request    agent builds the request and hands it to MQTT (encode + publish call)
 *   hopIn      agent publish -> broker -> server handler
 *   parse      server decodes and validates the request
 *   authorize  server checks the device and its assignment
 *   read       server gets the bytes (file open/stat/read, or the hot cache)
 *   publish    server hands the frame to MQTT and waits for it to resolve (QoS 1: the broker's PUBACK)
 *   hopOut     server publish -> broker -> agent handler
 *   decode     agent decodes the frame and matches it to its request
 *   write      agent writes the bytes at their offset
 *
 * and per download: persist (fdatasync + progress row, rounds), stall (time the window was held back
 * by the persisted bound), verify (final SHA-256 of the file + rename). Stages of different chunks
 * overlap (several requests in flight share one event loop here), so per-chunk figures are latencies,
 * not shares of the wall time.
 */
export const CHUNK_STAGES = [
  "request",
  "hopIn",
  "parse",
  "authorize",
  "read",
  "publish",
  "hopOut",
  "decode",
  "write",
] as const;

export interface ChunkStageReport {
  chunks: number;
  /** p50 per chunk, ms. */
  p50: Record<(typeof CHUNK_STAGES)[number] | "roundTrip", number>;
  /** Sum over the download, ms. */
  persistMs: number;
  persistRounds: number;
  stallMs: number;
  verifyMs: number;
  /** Window sizes seen (adaptive downloader), first to last. */
  windows: number[];
}

export function recordChunkStages(): { stop(): ChunkStageReport } {
  const events: ChunkTraceEvent[] = [];
  const off = subscribeChunkTrace((e) => events.push(e));
  return {
    stop() {
      off();
      return reportOf(events);
    },
  };
}

const r2 = (x: number) => Math.round(x * 100) / 100;

function reportOf(events: readonly ChunkTraceEvent[]): ChunkStageReport {
  const requests = new Map<string, Extract<ChunkTraceEvent, { kind: "request" }>>();
  const serves = new Map<string, Extract<ChunkTraceEvent, { kind: "serve" }>>();
  const frames: Extract<ChunkTraceEvent, { kind: "frame" }>[] = [];
  let persistMs = 0;
  let persistRounds = 0;
  let stallMs = 0;
  let verifyMs = 0;
  const windows: number[] = [];
  for (const e of events) {
    if (e.kind === "request") requests.set(e.reqId, e);
    else if (e.kind === "serve") serves.set(e.reqId, e);
    else if (e.kind === "frame") frames.push(e);
    else if (e.kind === "persist") {
      persistMs += e.tRecorded - e.t0;
      persistRounds += 1;
    } else if (e.kind === "stall") stallMs += e.t1 - e.t0;
    else if (e.kind === "verify") verifyMs += e.t1 - e.t0;
    else if (e.kind === "window") windows.push(e.window);
  }
  const stage: Record<string, number[]> = {};
  const push = (k: string, v: number) => {
    stage[k] ??= [];
    stage[k].push(v);
  };
  for (const f of frames) {
    const q = requests.get(f.reqId);
    const s = serves.get(f.reqId);
    if (!q || !s) continue;
    push("request", q.t - q.t0);
    push("hopIn", s.tIn - q.t);
    push("parse", s.tParsed - s.tIn);
    push("authorize", s.tAuthorized - s.tParsed);
    push("read", s.tRead - s.tAuthorized);
    push("publish", s.tSent - s.tPublish);
    push("hopOut", f.tIn - s.tPublish);
    push("decode", f.tDecoded - f.tIn);
    push("write", f.tWritten - f.tDecoded);
    push("roundTrip", f.tIn - q.t0);
  }
  const p50 = Object.fromEntries(
    [...CHUNK_STAGES, "roundTrip"].map((k) => [
      k,
      r2(
        percentile(
          [...(stage[k] ?? [])].sort((a, b) => a - b),
          50,
        ),
      ),
    ]),
  ) as ChunkStageReport["p50"];
  return {
    chunks: stage.roundTrip?.length ?? 0,
    p50,
    persistMs: r2(persistMs),
    persistRounds,
    stallMs: r2(stallMs),
    verifyMs: r2(verifyMs),
    windows,
  };
}
