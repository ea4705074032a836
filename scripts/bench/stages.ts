import type { InferStages } from "../../agent/api/v2-routes.js";
import { monoMs, type RunTiming } from "../../agent/runtime/host-protocol.js";
import type { InferRecord } from "../../agent/runtime/model-runtime.js";
import { percentile } from "./stats.js";

/**
 * Per-stage breakdown of one local infer (issue 13: "find where the time goes first"). Every
 * timestamp is `monoMs()` (CLOCK_MONOTONIC, shared by the agent and its hosts), so stages that cross
 * processes can be subtracted. Requests must run one at a time: the recorder pairs each client call
 * with the last HTTP and runtime timestamps it saw.
 *
 * Stages, in order:
 *   request     client builds and writes the request; agent reads it up to the headers
 *   bodyParse   agent reads the body and parses it (fastify content-type parser)
 *   validate    decode/validate the v2 body, serving layer, routing, runtime validation and conversion
 *   toHost      agent → host transfer (serialize, kernel, host-side decode)
 *   hostIn      host builds the ORT feeds
 *   ort         `session.run` in the host
 *   hostOut     host prepares the outputs for the reply
 *   fromHost    host → agent transfer
 *   agentAfter  agent after the reply: records, conversion back, serving layer
 *   serialize   v2 response encoding and HTTP serialization (until fastify `onSend`)
 *   reply       response on the wire and decoded by the client
 */
export const STAGES = [
  "request",
  "bodyParse",
  "validate",
  "toHost",
  "hostIn",
  "ort",
  "hostOut",
  "fromHost",
  "agentAfter",
  "serialize",
  "reply",
] as const;
export type Stage = (typeof STAGES)[number];

export interface Traced {
  client0: number;
  client1: number;
  http?: InferStages;
  run?: RunTiming;
}

/** Stage durations (ms) of one traced request; stages whose timestamps are missing are left out. Pure. */
export function stageDurations(t: Traced): Partial<Record<Stage, number>> {
  const out: Partial<Record<Stage, number>> = {};
  const h = t.http;
  const r = t.run;
  if (h) {
    out.request = h.received - t.client0;
    out.bodyParse = h.parsed - h.received;
    out.serialize = h.serialized - h.served;
    out.reply = t.client1 - h.serialized;
  }
  if (r) {
    // Without HTTP (runtime.infer called in-process) validate and agentAfter run from/to the caller.
    out.validate = r.sent - (h ? h.parsed : t.client0);
    out.toHost = r.received - r.sent;
    out.hostIn = r.ortStart - r.received;
    out.ort = r.ortEnd - r.ortStart;
    out.hostOut = r.replying - r.ortEnd;
    out.fromHost = r.answered - r.replying;
    out.agentAfter = (h ? h.served : t.client1) - r.answered;
  }
  return out;
}

/** Median (ms, 3 decimals) of each stage over the traced requests, plus the median total. Pure. */
export function stageMedians(traces: readonly Traced[]): Record<string, number> {
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const per = new Map<Stage, number[]>();
  for (const t of traces) {
    for (const [k, v] of Object.entries(stageDurations(t))) {
      const list = per.get(k as Stage) ?? [];
      list.push(v);
      per.set(k as Stage, list);
    }
  }
  const out: Record<string, number> = {};
  let sum = 0;
  for (const s of STAGES) {
    const xs = per.get(s);
    if (!xs) continue;
    const m = percentile(
      xs.sort((a, b) => a - b),
      50,
    );
    out[s] = round(m);
    sum += m;
  }
  out.sumOfMedians = round(sum);
  out.totalP50 = round(
    percentile(
      traces.map((t) => t.client1 - t.client0).sort((a, b) => a - b),
      50,
    ),
  );
  return out;
}

/** Collects the runtime's and the socket API's timestamps for sequential traced calls. */
export function createStageRecorder() {
  let http: InferStages | undefined;
  let run: RunTiming | undefined;
  return {
    /** For `runtime.observe`. */
    onRecord(r: InferRecord): void {
      if (!r.probe && r.stages) run = r.stages;
    },
    /** For `SocketApiDeps.onInferStages`. */
    onHttp(s: InferStages): void {
      http = s;
    },
    /** Times `fn` `n` times after `warmup` runs; one trace per timed call. */
    async time(n: number, warmup: number, fn: () => Promise<unknown>): Promise<Traced[]> {
      for (let i = 0; i < warmup; i++) await fn();
      const out: Traced[] = [];
      for (let i = 0; i < n; i++) {
        http = undefined;
        run = undefined;
        const client0 = monoMs();
        await fn();
        const client1 = monoMs();
        out.push({ client0, client1, ...(http ? { http } : {}), ...(run ? { run } : {}) });
      }
      return out;
    },
  };
}
