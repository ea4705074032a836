import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { jsonToRaw, type RawTensor, rawToJson } from "../../shared/tensors.js";
import type { Feedback } from "../feedback/feedback-routes.js";
import { monoMs } from "../runtime/host-protocol.js";
import type { InferRequest, InferResult } from "../runtime/model-runtime.js";
import type { AgentModelRuntime, RawInferRequest, RawInferResult } from "../runtime/runtime.js";
import type { SequenceStore } from "../runtime/sequence-store.js";
import { createServingLayer, type ServeResult, type ServingLayer } from "../serving/serving-layer.js";
import { HEADER_LENGTH, headerBytes, splitBody } from "./binary-tensors.js";
import type { ShmRegistry } from "./shm-regions.js";
import { callerRegions } from "./shm-routes.js";
import { decodeInferRequest, encodeInferResponse } from "./v2-infer.js";
import { registerStreamRoutes } from "./v2-stream.js";

export type V2Runtime = Pick<AgentModelRuntime, "serving" | "infer" | "loaded" | "stateOf"> &
  Partial<Pick<AgentModelRuntime, "inferRaw">>;

interface ModelParams {
  model: string;
  version?: string;
}

/** A body kept as bytes: binary-extension requests, and anything that is not JSON. */
interface BinaryBody {
  binaryBody: Buffer;
}

/** Binary replies at least this big are streamed as their parts instead of concatenated. */
const LARGE_BODY_BYTES = 256 * 1024;

const RepositoryIndexSchema = z.object({ ready: z.boolean().optional() }).strict().optional();

/** Without `inferRaw` (a runtime wrapped by telemetry), typed tensors take the JSON path. */
function rawVia(runtime: V2Runtime): (req: RawInferRequest) => Promise<RawInferResult> {
  if (runtime.inferRaw) return runtime.inferRaw.bind(runtime);
  return async (req) => {
    const inputs: InferRequest["inputs"] = {};
    for (const [n, t] of Object.entries(req.inputs)) inputs[n] = rawToJson(t);
    const res: InferResult = await runtime.infer({ ...req, inputs });
    const outputs: Record<string, RawTensor> = {};
    for (const [n, t] of Object.entries(res.outputs)) outputs[n] = jsonToRaw(n, t);
    const sha = runtime.loaded().find((v) => v.installed.model === res.model && v.installed.version === res.version);
    return { ...res, outputs, sha256: sha?.installed.sha256 ?? "" };
  };
}

export function defaultServingLayer(log: Logger, runtime: V2Runtime): ServingLayer {
  return createServingLayer({
    log,
    backend: {
      inferRaw: rawVia(runtime),
      infer: (r) => runtime.infer(r),
      serving: () => runtime.serving(),
      loaded: () => runtime.loaded(),
      stateOf: (v) => runtime.stateOf(v),
    },
  });
}

/**
 * Body parsing for the binary tensor extension. A request that carries `Inference-Header-Content-Length`
 * is kept as bytes whatever its content type (clients send it as application/json or
 * application/octet-stream); any other JSON body goes through fastify's own JSON parser (with its
 * prototype-poisoning protection).
 */
export function registerBinaryParsers(server: FastifyInstance): void {
  const json = server.getDefaultJsonParser("error", "error");
  server.removeContentTypeParser("application/json");
  server.addContentTypeParser("application/json", { parseAs: "buffer" }, (req, body, done) => {
    if (req.headers[HEADER_LENGTH] !== undefined) return done(null, { binaryBody: body as Buffer });
    // An empty body is "no body" (clients send the JSON content type on bodiless POSTs such as
    // `…/unregister`); each route still validates what it needs.
    if ((body as Buffer).length === 0) return done(null, undefined);
    json(req, (body as Buffer).toString("utf8"), done);
  });
  server.addContentTypeParser(["application/octet-stream", "*"], { parseAs: "buffer" }, (_req, body, done) =>
    done(null, { binaryBody: body as Buffer }),
  );
}

function bodyParts(req: FastifyRequest): { header: unknown; binary: Buffer | null } {
  const b = req.body as Partial<BinaryBody> | undefined;
  const hl = req.headers[HEADER_LENGTH];
  if (b && Buffer.isBuffer(b.binaryBody)) {
    if (hl === undefined) {
      // A non-JSON content type without the header: the whole body must still be JSON.
      try {
        return { header: JSON.parse(b.binaryBody.toString("utf8")), binary: null };
      } catch {
        throw new EdgeFleetError("BAD_REQUEST", "body is neither JSON nor a binary-extension request");
      }
    }
    const { header, binary } = splitBody(b.binaryBody, Array.isArray(hl) ? hl[0] : hl);
    try {
      return { header: JSON.parse(header.toString("utf8")), binary };
    } catch {
      throw new EdgeFleetError("BAD_REQUEST", "inference header is not valid JSON");
    }
  }
  return { header: req.body, binary: null };
}

/**
 * HTTP-side stage timestamps of one infer request (monotonic ms, host-protocol.ts `monoMs`), for the
 * benchmarks' per-stage breakdown (issue 13): headers parsed, body parsed (handler entered), serving
 * layer answered, reply serialized (fastify `onSend`).
 */
export interface InferStages {
  received: number;
  parsed: number;
  served: number;
  serialized: number;
}

/** Registers the hooks that collect `InferStages`; only called when a benchmark asks for them. */
function traceInferStages(
  server: FastifyInstance,
  sink: (s: InferStages) => void,
): WeakMap<object, Partial<InferStages>> {
  const open = new WeakMap<object, Partial<InferStages>>();
  server.addHook("onRequest", async (req) => {
    open.set(req.raw, { received: monoMs() });
  });
  server.addHook("onSend", async (req, _reply, payload) => {
    const s = open.get(req.raw);
    if (s?.served !== undefined) sink({ ...(s as InferStages), serialized: monoMs() });
    return payload;
  });
  return open;
}

/**
 * A frame of a sequence: straight to the sequence store, past the serving layer (no A/B arm, shadow,
 * batching or cache: the state makes a frame's answer depend on every frame before it).
 */
async function sequenceStep(
  sequences: SequenceStore | null,
  params: ModelParams,
  decoded: ReturnType<typeof decodeInferRequest>,
): Promise<ServeResult> {
  const seq = decoded.sequence!;
  if (!sequences) throw new EdgeFleetError("BAD_REQUEST", "this agent does not serve sequences");
  let inputs = decoded.raw;
  if (!inputs) {
    inputs = {};
    for (const [n, t] of Object.entries(decoded.json ?? {})) inputs[n] = jsonToRaw(n, t);
  }
  const res = await sequences.step({
    model: params.model,
    ...(params.version !== undefined ? { version: params.version } : {}),
    ...seq,
    inputs,
    ...(decoded.outputs ? { outputs: decoded.outputs } : {}),
  });
  return { model: res.model, version: res.version, outputs: res.outputs };
}

/**
 * `POST /v2/models/{m}[/versions/{v}]/infer` (JSON and binary), `GET /v2/models` (our extension:
 * every model with its versions, the serving one and its strategy) and `POST /v2/repository/index`.
 */
export function registerV2InferRoutes(
  server: FastifyInstance,
  deps: {
    runtime: V2Runtime;
    serving: ServingLayer;
    onInferStages?: (s: InferStages) => void;
    /** Shared-memory regions (issue 13); null when the extension is off. */
    shm?: ShmRegistry | null;
    /** Remembers predictions that carry an `id`, for ground-truth feedback (issue 22). */
    feedback?: Pick<Feedback, "recordPrediction"> | null;
    /** Sequences with implicit state (issue 18); without it a request with `sequence_id` is refused. */
    sequences?: SequenceStore | null;
    log?: Logger;
  },
): void {
  const { runtime, serving } = deps;
  const trace = deps.onInferStages ? traceInferStages(server, deps.onInferStages) : null;

  const infer = async (req: FastifyRequest<{ Params: ModelParams }>, reply: FastifyReply) => {
    const stages = trace?.get(req.raw);
    if (stages) stages.parsed = monoMs();
    const { header, binary } = bodyParts(req);
    const regions = callerRegions(deps.shm ?? null, req);
    const decoded = decodeInferRequest(header, binary, regions);
    const hdrKey = req.headers["x-ab-key"];
    const key = decoded.abKey ?? (typeof hdrKey === "string" ? hdrKey : undefined);
    const res = decoded.sequence
      ? await sequenceStep(deps.sequences ?? null, req.params, decoded)
      : await serving.serve({
          model: req.params.model,
          ...(req.params.version !== undefined ? { version: req.params.version } : {}),
          ...(decoded.json ? { json: decoded.json } : {}),
          ...(decoded.raw ? { inputs: decoded.raw } : {}),
          ...(decoded.outputs ? { outputs: decoded.outputs } : {}),
          ...(key !== undefined ? { key } : {}),
        });
    if (stages) stages.served = monoMs();
    if (decoded.id !== undefined && deps.feedback) {
      deps.feedback.recordPrediction({
        model: res.model,
        id: decoded.id,
        version: res.version,
        ...(res.arm ? { arm: res.arm } : {}),
        outputs: res.outputs,
      });
    }
    // Shadow work starts only once the caller's reply is on the wire (issue 8: never affects the caller).
    if (res.afterResponse) reply.raw.once("finish", res.afterResponse);
    if (res.arm) void reply.header("x-ab-arm", res.arm);
    const enc = encodeInferResponse(res, decoded);
    for (const w of enc.regionWrites)
      regions.write(`output "${w.name}"`, w.region.region, w.region.offset, w.region.byteSize, w.bytes);
    if (enc.parts.length === 0) return enc.header;
    void reply.type("application/octet-stream");
    const head = headerBytes(enc.header);
    void reply.header("inference-header-content-length", String(head.length));
    const length = enc.parts.reduce((n, p) => n + p.length, head.length);
    // A large body leaves as its parts, not concatenated (issue 13: a 4.9 MB copy per reply).
    if (length < LARGE_BODY_BYTES) return Buffer.concat([head, ...enc.parts], length);
    void reply.header("content-length", String(length));
    return Readable.from([head, ...enc.parts], { objectMode: false });
  };
  server.post<{ Params: ModelParams }>("/v2/models/:model/infer", infer);
  registerStreamRoutes(server, { sequences: deps.sequences ?? null, ...(deps.log ? { log: deps.log } : {}) });
  server.post<{ Params: ModelParams }>("/v2/models/:model/versions/:version/infer", infer);

  server.get("/v2/models", async () => {
    const byModel = new Map<string, string[]>();
    for (const v of runtime.loaded()) {
      const list = byModel.get(v.installed.model) ?? [];
      list.push(v.installed.version);
      byModel.set(v.installed.model, list);
    }
    const servingNow = runtime.serving();
    return {
      models: [...byModel].map(([name, versions]) => ({
        name,
        versions: [...new Set(versions)],
        serving_version: servingNow.get(name)?.installed.version ?? null,
        strategy: serving.strategy(name),
      })),
    };
  });

  server.post("/v2/repository/index", async (req) => {
    const parsed = RepositoryIndexSchema.safeParse(req.body ?? undefined);
    if (!parsed.success)
      throw new EdgeFleetError("BAD_REQUEST", `invalid repository index request: ${parsed.error.message}`);
    const onlyReady = parsed.data?.ready === true;
    const rows = runtime.loaded().map((v) => {
      const s = runtime.stateOf(v);
      const state = s === "serving" || s === "loaded" ? "READY" : s === "retiring" ? "UNLOADING" : "UNAVAILABLE";
      return {
        name: v.installed.model,
        version: v.installed.version,
        state,
        reason: s === "crashed" ? "host crashed; restarting" : "",
      };
    });
    return onlyReady ? rows.filter((r) => r.state === "READY") : rows;
  });
}
