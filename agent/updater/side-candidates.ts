import { canonicalJson } from "../../shared/canonical-json.js";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, type ErrorJson, toEdgeFleetError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { DesiredState } from "../../shared/schemas/desired-state.js";
import type { DeviceEvent, ReportedSide, UpdateState } from "../../shared/schemas/device-state.js";
import type { InstalledModel, LoadedVersion, ModelRuntime } from "../runtime/model-runtime.js";
import type { ModelStrategy, ServingLayer } from "../serving/serving-layer.js";
import type { AgentStore } from "../store/agent-store.js";
import { isStorageCode } from "../store/storage-faults.js";
import { checkCompatibility, type DeviceFacts } from "../trust/verify-desired.js";
import type { DamagedCandidates } from "./damaged-candidate.js";
import { summarize } from "./health-summary.js";
import type { Job } from "./pipeline-steps.js";
import { planSides, type SideAction, type SideRecord, servingConfigs } from "./plan-side.js";
import type { HealthRecorder } from "./probation-monitor.js";
import { marksBundleBad, type PipelineStep } from "./verdicts.js";

/** What the updater needs of the serving layer (agent/serving/serving-layer.ts). */
export type SideServing = Pick<ServingLayer, "setStrategy" | "configure" | "figuresFor" | "banditWeight">;

export interface SideDeps {
  log: Logger;
  clock: Clock;
  store: AgentStore;
  runtime: ModelRuntime;
  serving: SideServing | undefined;
  facts: DeviceFacts;
  deviceId: string;
  recorder: HealthRecorder;
  steps: Record<PipelineStep, (job: Job) => Promise<void>>;
  jobFor(model: string, sha256: string): Job | null;
  installedOf(model: string, ref: SideRecord["ref"]): Promise<InstalledModel>;
  publishEvent(e: DeviceEvent): void;
  publishReported(): void;
  isClosed(): boolean;
  /** Local damage to a side's extracted files between staging and loading (re-made, never marked bad). */
  damaged: DamagedCandidates;
  /** Fault injection before a step (the updater's `pauseBeforeStep`); tests change files there. */
  hold?(step: PipelineStep): Promise<void>;
  /** How often `reported` is re-published while a side runs, so gates see fresh figures (default 2 s). */
  reportEveryMs?: number;
  /** A step failed for the device's disk (issue 20 §2): reported and retried by the updater. */
  onStorageFault?(e: EdgeFleetError): void;
}

export interface SideCandidates {
  /** At start: re-attach the side candidates that were running before the restart. */
  restore(): Promise<void>;
  /**
   * Applies the desired state's side assignments. `remove` runs before the active pipeline (an
   * aborted side goes before anything else happens); `apply` after it (installs, strategy changes,
   * serving options, and removals the active pipeline did not take over).
   */
  reconcile(desired: DesiredState, phase: "remove" | "apply"): Promise<void>;
  /** Promotion: the side's loaded host becomes the active pipeline's candidate (no second load). */
  takeForPromotion(model: string, sha256: string): LoadedVersion | null;
  reported(): Map<string, ReportedSide>;
  /** The bundles side records name (the disk collector keeps them); no health summaries computed. */
  bundles(): string[];
  close(): void;
}

const KEY = (model: string) => `side:${model}`;
const SIDE_STEPS: readonly PipelineStep[] = ["downloading", "staging", "loading", "smoke-testing"];

/**
 * Side candidates (issue 4 `shadow`/`ab`, issue 8 on-device strategies): a second version of a model
 * installed beside the active one — verify → download → stage → load → smoke-test, never swapped —
 * then handed to the serving layer as the model's shadow or A/B candidate. The model's committed /
 * candidate record is never touched; the side's own record is persisted (KV `side:{model}`), so a
 * restart restores it. Decisions are `planSides` (pure); this file does the I/O.
 */
export function createSideCandidates(deps: SideDeps): SideCandidates {
  const { log, clock, store, runtime } = deps;
  const loaded = new Map<string, LoadedVersion>();
  const configured = new Map<string, string>();
  let ticker: { cancel(): void } | null = null;

  const read = (model: string): SideRecord | null => {
    const raw = store.getKv(KEY(model));
    return raw ? (JSON.parse(raw) as SideRecord | null) : null;
  };
  const records = (): SideRecord[] =>
    store.models().flatMap((m) => {
      const r = read(m.model);
      return r ? [r] : [];
    });

  const write = (rec: SideRecord, to: UpdateState, error: ErrorJson | null = null) => {
    const from = read(rec.model)?.state ?? "idle";
    const next: SideRecord = { ...rec, state: to, error };
    store.setKv(KEY(rec.model), JSON.stringify(next));
    log.info({ model: rec.model, side: rec.ref.version, from, to, error }, "side candidate transition");
    const event: DeviceEvent = {
      type: "update.transition",
      deviceId: deps.deviceId,
      ts: new Date(clock.now()).toISOString(),
      eventSeq: store.nextEventSeq(),
      model: rec.model,
      bundle: rec.ref.sha256,
      rolloutId: rec.rolloutId,
      from,
      to,
    };
    if (error) event.error = error;
    deps.publishEvent(event);
    deps.publishReported();
    return next;
  };

  const strategyOf = (rec: SideRecord): ModelStrategy => {
    const candidate = { version: rec.ref.version, sha256: rec.ref.sha256 };
    return rec.strategy.mode === "shadow"
      ? { mode: "shadow", sampleRate: rec.strategy.sampleRate, candidate }
      : {
          mode: "ab",
          weight: rec.strategy.weight,
          candidate,
          ...(rec.strategy.bandit ? { bandit: rec.strategy.bandit } : {}),
        };
  };

  const tick = () => {
    ticker = null;
    if (loaded.size === 0 || deps.isClosed()) return;
    deps.publishReported();
    ticker = clock.setTimeout(tick, deps.reportEveryMs ?? 2000);
  };

  const attach = (rec: SideRecord, version: LoadedVersion) => {
    loaded.set(rec.model, version);
    deps.serving?.setStrategy(rec.model, strategyOf(rec));
    ticker ??= clock.setTimeout(tick, deps.reportEveryMs ?? 2000);
  };

  const detach = async (model: string, opts: { unload: boolean }) => {
    const rec = read(model);
    deps.serving?.setStrategy(model, null);
    const version = loaded.get(model);
    loaded.delete(model);
    if (version && opts.unload) await runtime.unload(version).catch(() => undefined);
    if (rec) write(rec, "idle");
    store.setKv(KEY(model), "null");
    // `write` reported the side as idle; report again without it (an abort changes nothing else to report).
    deps.publishReported();
  };

  /**
   * The side's steps from `from`. Files changed on the device after staging are re-made from verified
   * bytes and the steps run again (damaged-candidate.ts); what still fails is thrown, as it decides
   * whether the bundle is marked bad (LOCAL_INTEGRITY_FAILED never is).
   */
  const runSteps = async (
    job: Job,
    rec: SideRecord,
    from: PipelineStep,
    repair?: { repairs: number; damage: ErrorJson },
  ): Promise<SideRecord> => {
    let step = from;
    try {
      for (step of SIDE_STEPS.slice(SIDE_STEPS.indexOf(from))) {
        if (deps.isClosed()) throw new EdgeFleetError("INTERNAL", "agent closing");
        rec = write(rec, step, step === from ? (repair?.damage ?? null) : null);
        await deps.hold?.(step);
        if (deps.isClosed()) throw new EdgeFleetError("INTERNAL", "agent closing");
        await deps.steps[step](job);
      }
      return rec;
    } catch (err) {
      if (deps.isClosed()) throw err;
      const next = await deps.damaged.afterFailure(job, step, toEdgeFleetError(err), repair?.repairs ?? 0);
      if (next.kind === "fail") throw next.error;
      return runSteps(job, rec, next.from, next);
    }
  };

  const install = async (a: Extract<SideAction, { kind: "install-side" }>) => {
    const job = deps.jobFor(a.model, a.assignment.bundle.sha256);
    if (!job) return;
    if (loaded.has(a.model)) await detach(a.model, { unload: true });
    job.background = a.strategy.mode === "shadow";
    let rec: SideRecord = {
      model: a.model,
      strategy: a.strategy,
      ref: job.ref,
      state: "idle",
      error: null,
      rolloutId: job.rolloutId,
      since: clock.now(),
    };
    try {
      rec = write(rec, "verifying");
      checkCompatibility(job.manifest, deps.facts);
      rec = await runSteps(job, rec, "downloading");
      if (!job.loaded) throw new EdgeFleetError("INTERNAL", "side candidate not loaded");
      rec = write({ ...rec, since: clock.now() }, "committed");
      attach(rec, job.loaded);
    } catch (err) {
      if (job.loaded && loaded.get(a.model) !== job.loaded) await runtime.unload(job.loaded).catch(() => undefined);
      if (deps.isClosed()) return; // the persisted step re-runs after the restart
      const e = toEdgeFleetError(err);
      if (marksBundleBad(e.code)) store.markBad(job.ref.sha256, a.model, e.code);
      write(rec, "failed", e.toJSON());
      if (isStorageCode(e.code)) deps.onStorageFault?.(e);
    }
  };

  const applyServing = (desired: DesiredState) => {
    if (!deps.serving) return;
    for (const [model, config] of servingConfigs(desired)) {
      const key = canonicalJson(config);
      if (configured.get(model) === key) continue;
      configured.set(model, key);
      deps.serving.configure(model, config);
    }
  };

  return {
    async restore() {
      for (const rec of records()) {
        if (rec.state !== "committed") continue;
        try {
          const version = await runtime.load(await deps.installedOf(rec.model, rec.ref), {
            background: rec.strategy.mode === "shadow",
          });
          attach(rec, version);
        } catch (err) {
          // Not loaded: the next reconcile installs it again (and re-verifies it on the way).
          log.error({ err, model: rec.model, side: rec.ref.version }, "could not restore the side candidate");
        }
      }
    },
    async reconcile(desired, phase) {
      const current = records().map((record) => ({ record, loaded: loaded.has(record.model) }));
      const committed = (model: string) => store.model(model)?.committed?.sha256 ?? null;
      for (const action of planSides(current, desired, committed)) {
        if (deps.isClosed()) return;
        if (action.kind === "remove-side") {
          if (phase === "remove" && action.promoted) continue; // the active pipeline takes it over
          await detach(action.model, { unload: true });
          continue;
        }
        if (phase === "remove" || action.kind === "noop") continue;
        if (action.kind === "set-strategy") {
          const rec = read(action.model);
          if (!rec) continue;
          const next: SideRecord = { ...rec, strategy: action.strategy };
          store.setKv(KEY(action.model), JSON.stringify(next));
          deps.serving?.setStrategy(action.model, strategyOf(next));
          deps.publishReported();
        } else await install(action);
      }
      if (phase === "apply") applyServing(desired);
    },
    takeForPromotion(model, sha256) {
      const rec = read(model);
      const version = loaded.get(model);
      if (!rec || rec.ref.sha256 !== sha256 || !version) return null;
      deps.serving?.setStrategy(model, null);
      loaded.delete(model);
      write(rec, "idle");
      store.setKv(KEY(model), "null");
      // A shadow host is tuned for background work: lower priority and a session whose thread pools
      // never spin (LoadOptions.background), which cannot be changed on a live session. It does not
      // serve: the pipeline loads a host with the profile's options (and smoke-tests it), this one stops.
      if (rec.strategy.mode === "shadow") {
        void runtime.unload(version).catch(() => undefined);
        return null;
      }
      return version;
    },
    bundles: () => records().map((r) => r.ref.sha256),
    reported() {
      const out = new Map<string, ReportedSide>();
      for (const rec of records()) {
        const version = loaded.get(rec.model);
        const health = summarize(
          rec.ref,
          rec.state === "committed" ? deps.recorder.since(rec.ref.sha256, rec.since) : [],
          {
            hostRestarts: version ? runtime.restarts(version) : 0,
            rssBytes: null,
          },
        );
        health.shadowAgreementPercent = deps.serving?.figuresFor(rec.ref.sha256)?.agreementPercent ?? null;
        const control = runtime.serving().get(rec.model);
        const baseline =
          control && rec.state === "committed"
            ? summarize(control.installed, deps.recorder.since(control.installed.sha256, rec.since), {
                hostRestarts: runtime.restarts(control),
                rssBytes: null,
              })
            : null;
        const side: ReportedSide = {
          mode: rec.strategy.mode,
          version: rec.ref.version,
          sha256: rec.ref.sha256,
          state: rec.state,
          health,
          baseline,
        };
        if (rec.error) side.error = rec.error;
        const bw = deps.serving?.banditWeight(rec.model) ?? null;
        if (bw !== null) side.banditWeight = bw;
        out.set(rec.model, side);
      }
      return out;
    },
    close() {
      ticker?.cancel();
      ticker = null;
    },
  };
}
