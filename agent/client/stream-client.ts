import { randomUUID } from "node:crypto";
import { type IncomingMessage, request } from "node:http";
import { createInterface } from "node:readline";
import { SocketApiError, type SocketClient, type V2InferInput, type V2InferResponse } from "./socket-client.js";

/**
 * The client side of sequences and streams (issue 18, docs/protocol.md "Sequences", "Streams").
 *
 * - `openSequence`: frames as ordinary infer requests with `sequence_id`; the first one starts the
 *   sequence, `end` ends it. The state stays in the agent.
 * - `openStream`: one long-lived request, NDJSON both ways; `write` resolves when the socket took the
 *   frame (it waits while the agent applies back-pressure), `results` yields answers in frame order.
 */
export interface SequenceOptions {
  /** Default: a random id. */
  id?: string;
  version?: string;
  outputs?: string[];
}

export interface InferSequence {
  readonly id: string;
  /** One frame; the first call starts the sequence. */
  infer(inputs: V2InferInput[]): Promise<V2InferResponse>;
  /** The last frame: its answer, and the agent forgets the state. */
  end(inputs: V2InferInput[]): Promise<V2InferResponse>;
}

export function openSequence(client: SocketClient, model: string, opts: SequenceOptions = {}): InferSequence {
  const id = opts.id ?? randomUUID();
  let started = false;
  const send = (inputs: V2InferInput[], end: boolean) => {
    const parameters = { sequence_id: id, sequence_start: !started, sequence_end: end };
    started = true;
    return client.infer(model, inputs, {
      parameters,
      ...(opts.version ? { version: opts.version } : {}),
      ...(opts.outputs ? { outputs: opts.outputs } : {}),
    });
  };
  return { id, infer: (inputs) => send(inputs, false), end: (inputs) => send(inputs, true) };
}

/** An answer line, or a frame's error (the stream goes on unless the error ended it). */
export type StreamResult = V2InferResponse | { error: string; code: string };

export interface InferStream {
  write(inputs: V2InferInput[], opts?: { outputs?: string[] }): Promise<void>;
  /** No more frames: the agent answers what it has and ends the sequence. */
  end(): Promise<void>;
  /** Answers in frame order; throws SocketApiError when the stream could not start (e.g. SEQUENCE_LIMIT). */
  results(): AsyncGenerator<StreamResult>;
}

export function streamPath(model: string, version?: string): string {
  return version
    ? `/v2/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/stream`
    : `/v2/models/${encodeURIComponent(model)}/stream`;
}

export function openStream(client: SocketClient, model: string, opts: { version?: string } = {}): InferStream {
  const req = request({
    socketPath: client.socketPath,
    method: "POST",
    path: streamPath(model, opts.version),
    headers: { "content-type": "application/x-ndjson", "transfer-encoding": "chunked" },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once("response", resolve);
    req.once("error", reject);
  });
  // Not awaited by every caller: keep a failed connection from being an unhandled rejection.
  response.catch(() => undefined);
  return {
    async write(inputs, o = {}) {
      const body: Record<string, unknown> = { inputs };
      if (o.outputs) body.outputs = o.outputs.map((name) => ({ name }));
      if (req.write(`${JSON.stringify(body)}\n`)) return;
      // Back-pressure: wait until the socket takes more (or the request is over, e.g. the agent ended it).
      await new Promise<void>((resolve) => {
        const done = () => {
          req.off("drain", done);
          req.off("close", done);
          resolve();
        };
        req.once("drain", done);
        req.once("close", done);
      });
    },
    async end() {
      req.end();
    },
    async *results() {
      const res = await response;
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        for await (const c of res) chunks.push(c as Buffer);
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown = { error: text };
        try {
          body = JSON.parse(text);
        } catch {}
        throw new SocketApiError(res.statusCode ?? 0, body);
      }
      for await (const line of createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY })) {
        if (line.trim().length > 0) yield JSON.parse(line) as StreamResult;
      }
    },
  };
}
