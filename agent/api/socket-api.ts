import { unlink } from "node:fs/promises";
import Fastify, { type FastifyInstance } from "fastify";
import { EdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Feedback } from "../feedback/feedback-routes.js";
import type { LoadedVersion } from "../runtime/model-runtime.js";
import type { AgentModelRuntime } from "../runtime/runtime.js";
import type { SequenceStore } from "../runtime/sequence-store.js";
import type { ServingLayer } from "../serving/serving-layer.js";
import { apiErrorReply } from "./api-errors.js";
import { modelMetadata } from "./model-metadata.js";
import { peerCredentialsAvailable } from "./peer-credentials.js";
import { ShmRegistry } from "./shm-regions.js";
import { registerShmRoutes } from "./shm-routes.js";
import { removeStaleSocket, restrictSocket } from "./socket-file.js";
import { defaultServingLayer, type InferStages, registerBinaryParsers, registerV2InferRoutes } from "./v2-routes.js";

/** The parts of the runtime the API reads. */
export type SocketApiRuntime = Pick<AgentModelRuntime, "serving" | "infer" | "loaded" | "stateOf"> &
  Partial<Pick<AgentModelRuntime, "inferRaw">>;

export interface SocketApiDeps {
  log: Logger;
  runtime: SocketApiRuntime;
  /** Body of `GET /v1/status` (built by the composition root: update state, profile, models). */
  status: () => unknown;
  socketPath: string;
  /** Agent version for `GET /v2`. */
  version: string;
  /** Max request body in bytes (default 16 MiB); larger bodies get 413. */
  bodyLimit?: number;
  /**
   * Whether the agent is ready to serve. The updater knows which models *should* serve (committed
   * ones may still be loading at boot); default: every loaded model has a healthy serving version.
   */
  ready?: () => boolean;
  /** Prometheus text for `GET /metrics`, when the agent has metrics. */
  metrics?: () => string | Promise<string>;
  /** Strategies, batching and cache between the API and the runtime (agent/serving); a plain one by default. */
  serving?: ServingLayer;
  /** More routes before listening (update locks, batch jobs: agent/serving). */
  registerRoutes?: (server: FastifyInstance) => void;
  /**
   * Benchmarks only: called after each infer reply is serialized with its HTTP-side stage timestamps
   * (v2-routes.ts `InferStages`). Unset in the agent, where it costs nothing (no hooks registered).
   */
  onInferStages?: (stages: InferStages) => void;
  /**
   * The shared-memory extension's regions (issue 13). Default: a registry over /dev/shm, offered when
   * the caller's socket credentials can be read; `false` turns the extension off.
   */
  shm?: ShmRegistry | false;
  /** Ground-truth feedback (issue 22): predictions with an `id` are remembered and joinable. */
  feedback?: Feedback;
  /** Sequences with implicit state (issue 18, runtime/sequence-store.ts); none: `sequence_id` is refused. */
  sequences?: SequenceStore;
}

export interface SocketApi {
  listen(): Promise<void>;
  close(): Promise<void>;
  /** For tests and in-process callers (fastify inject). */
  readonly server: FastifyInstance;
}

interface ModelParams {
  model: string;
  version?: string;
}

/** Versions a request may address explicitly: loaded or serving, not draining or dead. */
function addressable(runtime: SocketApiRuntime, model: string): LoadedVersion[] {
  return runtime
    .loaded()
    .filter((v) => v.installed.model === model && ["loaded", "serving"].includes(runtime.stateOf(v)));
}

function findVersion(runtime: SocketApiRuntime, p: ModelParams): LoadedVersion {
  const all = runtime.loaded().filter((v) => v.installed.model === p.model);
  if (all.length === 0) throw new EdgeFleetError("NOT_FOUND", `unknown model ${p.model}`);
  if (p.version === undefined) {
    const serving = runtime.serving().get(p.model);
    // Metadata stays available while a model is loaded but not yet serving.
    const v = serving ?? addressable(runtime, p.model).at(-1) ?? all.at(-1);
    return v!;
  }
  const serving = runtime.serving().get(p.model);
  if (serving?.installed.version === p.version) return serving;
  const v = addressable(runtime, p.model).find((x) => x.installed.version === p.version);
  if (!v) throw new EdgeFleetError("NOT_FOUND", `model ${p.model} has no version ${p.version}`);
  return v;
}

function isReady(runtime: SocketApiRuntime, v: LoadedVersion): boolean {
  const state = runtime.stateOf(v);
  return state === "serving" || state === "loaded";
}

/**
 * Ready means the agent can serve (issue 20 §7): at least one model, and every loaded model has a
 * healthy serving version. An agent with nothing to serve is live but not ready.
 */
function defaultReady(runtime: SocketApiRuntime): boolean {
  const models = new Set(runtime.loaded().map((v) => v.installed.model));
  if (models.size === 0) return false;
  const serving = runtime.serving();
  for (const m of models) {
    const v = serving.get(m);
    if (!v || runtime.stateOf(v) !== "serving") return false;
  }
  return true;
}

/**
 * The agent's local HTTP API on a Unix socket (architecture.md §5): Open Inference Protocol v2 + status.
 * Every error leaves through one handler as `{ error, code }`; no input can crash the process.
 */
export function createSocketApi(deps: SocketApiDeps): SocketApi {
  const { runtime } = deps;
  const log = deps.log.child({ component: "socket-api" });
  const ready = deps.ready ?? (() => defaultReady(runtime));
  const server = Fastify({ logger: false, bodyLimit: deps.bodyLimit ?? 16 * 1024 * 1024 });
  // Without SO_PEERCRED a region could not be tied to its owner: then the extension is not offered at all.
  const shm = deps.shm === false || !peerCredentialsAvailable() ? null : (deps.shm ?? new ShmRegistry());

  server.setErrorHandler((err, req, reply) => {
    const r = apiErrorReply(err);
    if (r.serverFault) log.error({ err, url: req.url }, "request failed");
    else log.debug({ code: r.body.code, url: req.url, message: r.body.error }, "request rejected");
    void reply.code(r.status).send(r.body);
  });
  server.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route ${req.method} ${req.url}`, code: "NOT_FOUND" });
  });

  server.get("/v2", async () => ({
    name: "edgefleet-agent",
    version: deps.version,
    extensions: ["binary_tensor_data", "parameters", "model_repository", ...(shm ? ["system_shared_memory"] : [])],
  }));
  server.get("/v2/health/live", async () => ({ live: true }));
  server.get("/v2/health/ready", async () => {
    if (!ready()) {
      const none = runtime.loaded().length === 0;
      throw new EdgeFleetError(
        "MODEL_NOT_READY",
        none ? "no model to serve yet" : "not every model has a serving version",
      );
    }
    return { ready: true };
  });

  const metadata = async (req: { params: ModelParams }) => {
    const v = findVersion(runtime, req.params);
    const versions = addressable(runtime, req.params.model).map((x) => x.installed.version);
    return modelMetadata(v, versions.length > 0 ? versions : [v.installed.version]);
  };
  server.get<{ Params: ModelParams }>("/v2/models/:model", metadata);
  server.get<{ Params: ModelParams }>("/v2/models/:model/versions/:version", metadata);

  const modelReady = async (req: { params: ModelParams }) => {
    const v = findVersion(runtime, req.params);
    const serving = runtime.serving().get(req.params.model);
    const ok =
      req.params.version === undefined ? serving === v && runtime.stateOf(v) === "serving" : isReady(runtime, v);
    if (!ok) throw new EdgeFleetError("MODEL_NOT_READY", `model ${req.params.model} is not ready`);
    return { name: req.params.model, ready: true };
  };
  server.get<{ Params: ModelParams }>("/v2/models/:model/ready", modelReady);
  server.get<{ Params: ModelParams }>("/v2/models/:model/versions/:version/ready", modelReady);

  // Infer (JSON + binary extension), GET /v2/models, repository index, strategies: agent/api/v2-routes.ts.
  registerBinaryParsers(server);
  registerV2InferRoutes(server, {
    runtime,
    serving: deps.serving ?? defaultServingLayer(log, runtime),
    ...(deps.onInferStages ? { onInferStages: deps.onInferStages } : {}),
    ...(deps.feedback ? { feedback: deps.feedback } : {}),
    ...(deps.sequences ? { sequences: deps.sequences } : {}),
    log,
    shm,
  });
  if (shm) registerShmRoutes(server, shm);
  deps.feedback?.register(server);
  deps.registerRoutes?.(server);

  server.get("/v1/status", async () => deps.status());
  if (deps.metrics) {
    const metrics = deps.metrics;
    server.get("/metrics", async (_req, reply) => {
      void reply.type("text/plain; version=0.0.4");
      return metrics();
    });
  }

  let listening = false;
  return {
    server,
    async listen() {
      await removeStaleSocket(deps.socketPath);
      await server.listen({ path: deps.socketPath });
      listening = true;
      await restrictSocket(deps.socketPath);
      log.info({ socketPath: deps.socketPath }, "socket API listening");
    },
    async close() {
      await server.close();
      deps.sequences?.close();
      shm?.close();
      if (listening) {
        listening = false;
        // Fastify/net usually unlinks it; make sure a restart never sees a stale file.
        await unlink(deps.socketPath).catch(() => undefined);
      }
    },
  };
}
