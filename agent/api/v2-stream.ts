import { randomUUID } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { EdgeFleetError, toEdgeFleetError } from "../../shared/errors.js";
import { httpStatusFor } from "../../shared/http-status.js";
import type { Logger } from "../../shared/logger.js";
import { jsonToRaw, type RawTensor } from "../../shared/tensors.js";
import type { SequenceStore } from "../runtime/sequence-store.js";
import { decodeInferRequest, encodeInferResponse } from "./v2-infer.js";

/**
 * Streams over the socket (issue 18, docs/protocol.md "Streams"): one long-lived HTTP/1.1 request per
 * stream, NDJSON both ways — the app writes one v2 infer body per line as frames come, and reads one
 * v2 infer answer per line as they are ready, on the same connection. Chunked HTTP rather than
 * WebSocket: fastify has no WebSocket support without a plugin (a new dependency), and a duplex
 * HTTP/1.1 exchange on a Unix socket needs nothing but Node's own client.
 *
 * A stream is one sequence (sequence-store.ts): the first line starts it, the end of the request body
 * ends it, the state stays in the model host. Back-pressure, end to end: at most `depth` frames are
 * read and not yet answered; past that the agent stops reading, so the kernel's socket buffer fills
 * and the app's writes wait (overflow policy: block, never drop, never grow). Answers leave in frame
 * order; when the app reads slowly, `write` returning false stops everything until `drain`.
 */
export const STREAM_CONTENT_TYPE = "application/x-ndjson";
export const DEFAULT_STREAM_DEPTH = 16;
/** A line longer than this is refused (the stream ends with 413 PAYLOAD_TOO_LARGE). */
const MAX_LINE_BYTES = 4 * 1024 * 1024;

interface Params {
  model: string;
  version?: string;
}

/** A frame's result line, or an error line that may end the stream. */
type Result = { ok: true; line: string } | { ok: false; error: EdgeFleetError };

/** The NDJSON lines of `body`, with a bound on each line's length. */
async function* ndjsonLines(body: Readable): AsyncGenerator<string> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    let buf = rest.length > 0 ? Buffer.concat([rest, chunk as Buffer]) : (chunk as Buffer);
    let nl = buf.indexOf(10);
    while (nl >= 0) {
      const line = buf.subarray(0, nl).toString("utf8").trim();
      if (line.length > 0) yield line;
      buf = buf.subarray(nl + 1);
      nl = buf.indexOf(10);
    }
    if (buf.length > MAX_LINE_BYTES) {
      throw new EdgeFleetError("PAYLOAD_TOO_LARGE", `a stream line is over ${MAX_LINE_BYTES} bytes`);
    }
    rest = buf;
  }
  const last = rest.toString("utf8").trim();
  if (last.length > 0) yield last;
}

/** Errors after which the stream's sequence cannot go on: the stream ends with them. */
const FATAL = new Set([
  "SEQUENCE_LIMIT",
  "SEQUENCE_UNKNOWN",
  "SEQUENCE_LOST",
  "NOT_FOUND",
  "MODEL_NOT_READY",
  "PAYLOAD_TOO_LARGE",
]);

/** Until `res` takes more, or is gone (an app that hung up must not leave the stream waiting). */
function writable(res: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

const errorLine = (e: EdgeFleetError) => `${JSON.stringify({ error: e.message, code: e.code })}\n`;

export function registerStreamRoutes(
  server: FastifyInstance,
  deps: { sequences: SequenceStore | null; log?: Logger; depth?: number },
): void {
  const depth = deps.depth ?? DEFAULT_STREAM_DEPTH;
  // The body is handed over unread: the handler consumes it line by line while it answers.
  server.addContentTypeParser(STREAM_CONTENT_TYPE, (_req, payload, done) => done(null, payload));

  const stream = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const sequences = deps.sequences;
    if (!sequences) throw new EdgeFleetError("BAD_REQUEST", "this agent does not serve sequences");
    if (!(req.headers["content-type"] ?? "").startsWith(STREAM_CONTENT_TYPE)) {
      throw new EdgeFleetError("BAD_REQUEST", `a stream's body is ${STREAM_CONTENT_TYPE}`);
    }
    const body = req.body as Readable;
    const { model, version } = req.params;
    const id = `stream:${randomUUID()}`;
    const res = reply.raw;
    reply.hijack();

    let first = true;
    let headersSent = false;
    let stopped = false;
    let outstanding = 0;
    let slot: (() => void) | null = null;
    let writes: Promise<void> = Promise.resolve();

    const frame = async (line: string, start: boolean): Promise<Result> => {
      try {
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          throw new EdgeFleetError("BAD_REQUEST", "a stream line is not JSON");
        }
        const decoded = decodeInferRequest(parsed, null);
        if (decoded.sequence) throw new EdgeFleetError("BAD_REQUEST", "a stream is its own sequence: no sequence_id");
        const inputs: Record<string, RawTensor> = {};
        for (const [n, t] of Object.entries(decoded.json ?? {})) inputs[n] = jsonToRaw(n, t);
        const out = await sequences.step({
          model,
          ...(version !== undefined ? { version } : {}),
          id,
          start,
          end: false,
          inputs,
          ...(decoded.outputs ? { outputs: decoded.outputs } : {}),
        });
        const enc = encodeInferResponse({ model: out.model, version: out.version, outputs: out.outputs }, decoded);
        return { ok: true, line: `${JSON.stringify(enc.header)}\n` };
      } catch (err) {
        return { ok: false, error: toEdgeFleetError(err) };
      }
    };

    /** Writes one result in frame order; the first decides the status (an error before any result is an HTTP error). */
    const write = async (r: Result) => {
      if (stopped) return;
      if (!headersSent) {
        headersSent = true;
        if (!r.ok) {
          stopped = true;
          res.writeHead(httpStatusFor(r.error.code), { "content-type": "application/json" });
          res.end(JSON.stringify({ error: r.error.message, code: r.error.code }));
          return;
        }
        res.writeHead(200, { "content-type": STREAM_CONTENT_TYPE, "cache-control": "no-store" });
      }
      const text = r.ok ? r.line : errorLine(r.error);
      if (!r.ok && FATAL.has(r.error.code)) stopped = true;
      if (!res.write(text) && !res.destroyed) await writable(res);
    };

    const queue = (p: Promise<Result>) => {
      outstanding++;
      writes = writes
        .then(() => p)
        .then(write)
        .finally(() => {
          outstanding--;
          slot?.();
        });
    };

    try {
      for await (const line of ndjsonLines(body)) {
        if (stopped) break;
        queue(frame(line, first));
        first = false;
        while (outstanding >= depth && !stopped) await new Promise<void>((r) => (slot = r));
        slot = null;
      }
    } catch (err) {
      const e = toEdgeFleetError(err, "BAD_REQUEST");
      // The app went away mid-stream (aborted body) or sent an oversized line.
      queue(Promise.resolve({ ok: false, error: e }));
    }
    await writes.catch(() => undefined);
    await sequences.end(model, id);
    if (!res.writableEnded) {
      if (!headersSent) res.writeHead(200, { "content-type": STREAM_CONTENT_TYPE });
      res.end();
    }
    // An app that stopped early (fatal error) may still be writing: let the rest of its body go.
    if (!body.readableEnded) body.resume();
    deps.log?.debug({ model, id }, "stream ended");
  };
  server.post<{ Params: Params }>("/v2/models/:model/stream", stream);
  server.post<{ Params: Params }>("/v2/models/:model/versions/:version/stream", stream);
}
