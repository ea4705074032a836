import { type Clock, systemClock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { JsonTensor } from "../../shared/schemas/tensor.js";
import { jsonToRaw, type RawTensor } from "../../shared/tensors.js";
import type { InferRequest, InferResult, LoadedVersion } from "../runtime/model-runtime.js";
import type { AgentModelRuntime, RawInferResult } from "../runtime/runtime.js";
import type { BanditPolicy, BanditWeights } from "./bandit.js";
import { batchSignature } from "./batch-assembly.js";
import { createDynamicBatcher, type DynamicBatcher } from "./dynamic-batcher.js";
import { cacheKey, createLruCache, type LruCache, rawBytes } from "./response-cache.js";
import type { ServingConfig } from "./serving-config.js";
import { createShadowScheduler, DEFAULT_SHADOW_POLICY, type ShadowPolicy } from "./shadow-scheduler.js";
import { createShadowStats, type ShadowFigures, type ShadowStats } from "./shadow-stats.js";
import { type Arm, chooseArm, DEFAULT_TOLERANCE, outputsAgree, sampleShadow } from "./strategy-decisions.js";

/** A candidate running beside the serving version of its model (shadow or A/B). */
export type ModelStrategy =
  | { mode: "shadow"; sampleRate: number; candidate: { version: string; sha256: string } }
  | {
      mode: "ab";
      weight: number;
      candidate: { version: string; sha256: string };
      /** Bandit A/B (issue 22, bandit.ts): the split follows the feedback reward, each arm kept ≥ minShare. */
      bandit?: BanditPolicy;
    };

export type ServingBackend = Pick<AgentModelRuntime, "inferRaw" | "serving" | "loaded" | "stateOf"> & {
  /** The JSON path, when a JSON request needs nothing raw (telemetry's tap wraps this one). */
  infer?: (req: InferRequest) => Promise<InferResult>;
};

export interface ServeRequest {
  model: string;
  version?: string;
  /** Typed inputs; built from `json` lazily when the request came as JSON. */
  inputs?: Record<string, RawTensor>;
  json?: Record<string, JsonTensor>;
  outputs?: string[];
  /** Sticky A/B key (`parameters.ab_key` or the `x-ab-key` header). */
  key?: string;
}

export interface ServeResult {
  model: string;
  version: string;
  outputs: Record<string, RawTensor>;
  /** Outputs already as JSON, when the JSON path ran (saves a conversion). */
  json?: Record<string, JsonTensor>;
  /** Set when the model runs an A/B split: which arm served. */
  arm?: Arm;
  cached?: boolean;
  /** Work to start once the reply has been written (the shadow run). Call at most once. */
  afterResponse?: () => void;
}

export interface ServingLayer {
  serve(req: ServeRequest): Promise<ServeResult>;
  setStrategy(model: string, strategy: ModelStrategy | null): void;
  strategy(model: string): ModelStrategy | null;
  /** The bandit's current candidate share for `model`, when its A/B split is a bandit. */
  banditWeight(model: string): number | null;
  configure(model: string, config: ServingConfig | null): void;
  /** Shadow/A-B figures per candidate version. */
  figures(): ShadowFigures[];
  figuresFor(sha256: string): ShadowFigures | null;
  cacheStats(model: string): ReturnType<LruCache<unknown>["stats"]> | null;
  /** Replaces the shadow scheduling policy (unset fields take the defaults). */
  setShadowPolicy(policy: Partial<ShadowPolicy>): void;
  close(): void;
}

export interface ServingLayerDeps {
  log: Logger;
  backend: ServingBackend;
  random?: () => number;
  /** When sampled shadow requests may run (default: idle time only, see shadow-scheduler.ts). */
  shadowPolicy?: Partial<ShadowPolicy>;
  /** Bandit weights from the feedback reward (issue 22); without it a bandit split keeps its start weight. */
  bandit?: BanditWeights;
  /** Timers and a sub-millisecond monotonic `now` for the shadow scheduler (default: performance.now). */
  clock?: Pick<Clock, "now" | "setTimeout">;
}

/** The request's typed inputs, converted once from JSON when needed and kept on the request. */
function rawInputs(req: ServeRequest): Record<string, RawTensor> {
  if (!req.inputs) req.inputs = toRaw(req.json ?? {});
  return req.inputs;
}

const toRaw = (json: Record<string, JsonTensor>) => {
  const out: Record<string, RawTensor> = {};
  for (const [n, t] of Object.entries(json)) out[n] = jsonToRaw(n, t);
  return out;
};

/**
 * Between the socket API and the runtime: on-device strategies (shadow, A/B), dynamic batching and
 * the response cache (issue 8). Routing decisions are the pure functions in strategy-decisions.ts,
 * batch-assembly.ts and shadow-scheduler.ts. Invariants: the caller's answer never waits for, or
 * fails because of, a shadow (a sample is queued in `afterResponse`, runs only while no caller
 * request is in flight, and its errors are only counted); a cached answer is only stored when the
 * version that produced it is the one its key names.
 */
export function createServingLayer(deps: ServingLayerDeps): ServingLayer {
  const log = deps.log.child({ component: "serving" });
  const random = deps.random ?? Math.random;
  const backend = deps.backend;
  const shadows = createShadowScheduler({
    clock: deps.clock ?? { now: () => performance.now(), setTimeout: systemClock.setTimeout },
    policy: { ...DEFAULT_SHADOW_POLICY, ...deps.shadowPolicy },
  });
  const strategies = new Map<string, ModelStrategy>();
  const configs = new Map<string, ServingConfig>();
  const caches = new Map<string, LruCache<RawInferResult>>();
  const batchers = new Map<string, DynamicBatcher>();
  const stats: ShadowStats = createShadowStats();

  /** The loaded version a request would reach (for cache keys); undefined when unknown. */
  const resolve = (model: string, version?: string): LoadedVersion | undefined => {
    if (version === undefined) return backend.serving().get(model);
    return backend
      .loaded()
      .find(
        (v) =>
          v.installed.model === model &&
          v.installed.version === version &&
          ["loaded", "serving"].includes(backend.stateOf(v)),
      );
  };

  const runRaw = (
    model: string,
    version: string | undefined,
    inputs: Record<string, RawTensor>,
    outputs?: string[],
  ) => {
    const cfg = configs.get(model)?.dynamicBatching;
    const first = Object.values(inputs)[0];
    if (!cfg || !first || first.dims.length === 0) {
      return backend.inferRaw({ model, ...(version ? { version } : {}), inputs, ...(outputs ? { outputs } : {}) });
    }
    const key = `${model}@${version ?? "*"}#${batchSignature(inputs, outputs)}`;
    let b = batchers.get(key);
    if (!b) {
      b = createDynamicBatcher({
        policy: {
          maxBatchSize: cfg.maxBatchSize,
          preferredBatchSizes: cfg.preferredBatchSizes,
          maxQueueDelayMicros: cfg.maxQueueDelayMicros,
        },
        run: (batched) =>
          backend.inferRaw({
            model,
            ...(version ? { version } : {}),
            inputs: batched,
            ...(outputs ? { outputs } : {}),
          }),
      });
      batchers.set(key, b);
    }
    return b.submit(inputs);
  };

  /** One model call on a chosen version selector, through cache and batcher. */
  const call = async (
    req: ServeRequest,
    version: string | undefined,
  ): Promise<{
    version: string;
    sha256: string;
    outputs: Record<string, RawTensor>;
    json?: Record<string, JsonTensor>;
    cached?: boolean;
  }> => {
    const cfg = configs.get(req.model);
    // Plain JSON request: the JSON path keeps the telemetry tap's view of API requests intact.
    if (req.json && !cfg?.cache && !cfg?.dynamicBatching && backend.infer) {
      const res = await backend.infer({
        model: req.model,
        ...(version ? { version } : {}),
        inputs: req.json,
        ...(req.outputs ? { outputs: req.outputs } : {}),
      });
      const target = resolve(req.model, res.version);
      return {
        version: res.version,
        sha256: target?.installed.sha256 ?? "",
        outputs: toRaw(res.outputs),
        json: res.outputs,
      };
    }
    const inputs = rawInputs(req);
    let key: string | null = null;
    let cache: LruCache<RawInferResult> | undefined;
    if (cfg?.cache) {
      const target = resolve(req.model, version);
      if (target) {
        key = cacheKey(target.installed.sha256, inputs, req.outputs);
        cache = caches.get(req.model);
        if (!cache) {
          cache = createLruCache(cfg.cache);
          caches.set(req.model, cache);
        }
        const hit = cache.get(key);
        if (hit) return { ...hit, cached: true };
        const res = await runRaw(req.model, version, inputs, req.outputs);
        // A swap between key and answer: the answer belongs to another version; do not file it under this key.
        if (res.sha256 === target.installed.sha256) cache.set(key, res, rawBytes(res.outputs));
        return res;
      }
    }
    return runRaw(req.model, version, inputs, req.outputs);
  };

  const shadowRun = (
    req: ServeRequest,
    s: Extract<ModelStrategy, { mode: "shadow" }>,
    primary: { outputs: Record<string, RawTensor>; ms: number },
  ) => {
    if (!sampleShadow(s.sampleRate, random)) return undefined;
    const who = { model: req.model, version: s.candidate.version, sha256: s.candidate.sha256, mode: "shadow" as const };
    if (!shadows.hasRoom()) {
      // No idle time lately: skip now, before any work is spent on the sample.
      stats.record(who, { ok: true, skippedBusy: true });
      return undefined;
    }
    const names = Object.keys(primary.outputs);
    return () =>
      shadows.offer({
        run: async () => {
          const started = performance.now();
          try {
            const res = await backend.inferRaw({
              model: req.model,
              version: s.candidate.version,
              // JSON → typed only now, in idle time: a sample that is dropped never pays for it.
              inputs: rawInputs(req),
              outputs: names,
              internal: true,
            });
            const agreed = outputsAgree(primary.outputs, res.outputs, DEFAULT_TOLERANCE);
            stats.record(who, { ok: true, agreed, candidateMs: performance.now() - started, controlMs: primary.ms });
          } catch (err) {
            stats.record(who, { ok: false });
            log.debug({ err, model: req.model, version: s.candidate.version }, "shadow inference failed");
          }
        },
        dropped: () => stats.record(who, { ok: true, skippedBusy: true }),
      });
  };

  const serveOnce = async (req: ServeRequest): Promise<ServeResult> => {
    const s = req.version === undefined ? strategies.get(req.model) : undefined;
    if (s?.mode === "ab") {
      const weight = s.bandit && deps.bandit ? deps.bandit.weight(req.model, s.bandit) : s.weight;
      const arm = chooseArm(weight, req.key, random);
      const started = performance.now();
      const res = await call(req, arm === "candidate" ? s.candidate.version : undefined);
      const ms = performance.now() - started;
      if (arm === "candidate") {
        stats.record({ model: req.model, ...s.candidate, mode: "ab" }, { ok: true, candidateMs: ms });
      } else stats.record({ model: req.model, ...s.candidate, mode: "ab" }, { ok: true, controlMs: ms });
      return { model: req.model, ...res, arm };
    }
    const started = performance.now();
    const res = await call(req, req.version);
    const out: ServeResult = { model: req.model, ...res };
    if (s?.mode === "shadow" && res.sha256 !== s.candidate.sha256) {
      const after = shadowRun(req, s, { outputs: res.outputs, ms: performance.now() - started });
      if (after) out.afterResponse = after;
    }
    return out;
  };

  return {
    async serve(req) {
      // Every caller request counts as CPU in use, whatever its model: shadows wait for idle time.
      shadows.primaryStarted();
      try {
        return await serveOnce(req);
      } finally {
        shadows.primaryFinished();
      }
    },
    setStrategy(model, strategy) {
      const prev = strategies.get(model);
      if (prev && prev.candidate.sha256 !== strategy?.candidate.sha256) stats.reset(prev.candidate.sha256);
      if (prev?.candidate.sha256 !== strategy?.candidate.sha256) deps.bandit?.forget(model);
      if (strategy) strategies.set(model, strategy);
      else strategies.delete(model);
      log.info({ model, strategy }, "serving strategy set");
    },
    strategy: (model) => strategies.get(model) ?? null,
    banditWeight(model) {
      const s = strategies.get(model);
      if (s?.mode !== "ab" || !s.bandit) return null;
      return deps.bandit?.last(model) ?? s.weight;
    },
    configure(model, config) {
      for (const [k, b] of batchers) {
        if (k.startsWith(`${model}@`)) {
          b.close();
          batchers.delete(k);
        }
      }
      caches.delete(model);
      if (config) configs.set(model, config);
      else configs.delete(model);
    },
    figures: () => stats.all(),
    figuresFor: (sha) => stats.get(sha),
    cacheStats: (model) => caches.get(model)?.stats() ?? null,
    setShadowPolicy: (policy) => shadows.setPolicy({ ...DEFAULT_SHADOW_POLICY, ...policy }),
    close() {
      shadows.close();
      for (const b of batchers.values()) b.close();
      batchers.clear();
    },
  };
}
