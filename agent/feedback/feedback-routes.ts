import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError } from "../../shared/errors.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { RawTensor } from "../../shared/tensors.js";
import { createFeedbackStats, type FeedbackStats, type JoinOutcome, type Truth } from "./feedback-stats.js";
import { createPageHinkley, type PageHinkley, type PageHinkleyAlarm } from "./page-hinkley.js";
import { createPredictionWindow, type PredictionWindow, summarise } from "./prediction-window.js";

export interface ConceptDrift extends PageHinkleyAlarm {
  model: string;
  version: string;
  at: number;
}

/** The `concept.drift` device event for an alarm (shared/schemas/device-state.ts). */
export function conceptDriftEvent(d: ConceptDrift, deviceId: string, eventSeq: number): DeviceEvent {
  return {
    type: "concept.drift",
    deviceId,
    ts: new Date(d.at).toISOString(),
    eventSeq,
    model: d.model,
    version: d.version,
    samples: d.samples,
    errorRateBefore: Math.min(1, d.meanBefore),
    errorRateRecent: Math.min(1, d.meanRecent),
    recentSamples: d.recentSamples,
    statistic: d.statistic,
    threshold: d.threshold,
  };
}

/**
 * Ground truth from local apps (issue 22, docs/protocol.md "Feedback"): an app that learns the
 * truth after a prediction sends it with the inference request's `id`; the agent joins it to what
 * it remembers of that prediction and keeps accuracy per model version and A/B arm.
 */
const IdSchema = z.string().min(1).max(256);
const OneSchema = z.union([
  z.object({ id: IdSchema, label: z.number().int().min(0) }).strict(),
  z.object({ id: IdSchema, target: z.array(z.number().finite()).min(1).max(64) }).strict(),
]);
const BodySchema = z.union([OneSchema, z.object({ feedback: z.array(OneSchema).min(1).max(1000) }).strict()]);

export interface FeedbackConfig {
  /** Predictions remembered (default 10,000): the window's memory bound. */
  capacity: number;
  /** How late feedback may come (default 1 h). */
  horizonMs: number;
}
export const DEFAULT_FEEDBACK: FeedbackConfig = { capacity: 10_000, horizonMs: 3_600_000 };

export interface Feedback {
  /** Called by the infer route for requests that carry an `id`. */
  recordPrediction(r: {
    model: string;
    id: string;
    version: string;
    arm?: string;
    outputs: Record<string, RawTensor>;
  }): void;
  readonly stats: FeedbackStats;
  /** Concept-drift alarms per model version since start (for the metrics). */
  driftAlarms(): { model: string; version: string; count: number }[];
  register(server: FastifyInstance): void;
}

type Result = { id: string; status: JoinOutcome | "unknown" | "expired" | "already-joined" };

export function createFeedback(opts: {
  clock: Clock;
  config?: Partial<FeedbackConfig>;
  /** A version's joined error rate rose (Page-Hinkley alarm): the agent publishes a `concept.drift` event. */
  onConceptDrift?: (d: ConceptDrift) => void;
  /** Classification feedback was joined (the figures in `reported` changed). */
  onJoined?: () => void;
}): Feedback {
  const config = { ...DEFAULT_FEEDBACK, ...opts.config };
  const window: PredictionWindow = createPredictionWindow({ clock: opts.clock, ...config });
  const stats = createFeedbackStats();
  // One detector per model version, on its classification error stream (1 = wrong, 0 = right).
  const detectors = new Map<string, PageHinkley>();
  const lastDrift = new Map<string, ConceptDrift>();
  const alarmCounts = new Map<string, { model: string; version: string; count: number }>();
  const watchErrors = (model: string, version: string, wrong: boolean) => {
    const k = `${model}\u0000${version}`;
    let d = detectors.get(k);
    if (!d) {
      d = createPageHinkley();
      detectors.set(k, d);
    }
    const alarm = d.add(wrong ? 1 : 0);
    if (!alarm) return;
    const drift: ConceptDrift = { ...alarm, model, version, at: opts.clock.now() };
    lastDrift.set(k, drift);
    const c = alarmCounts.get(k) ?? { model, version, count: 0 };
    c.count++;
    alarmCounts.set(k, c);
    opts.onConceptDrift?.(drift);
  };

  const join = (model: string, item: z.infer<typeof OneSchema>): Result => {
    const found = window.take(model, item.id);
    if (!found.found) return { id: item.id, status: found.reason };
    const truth: Truth = "label" in item ? { label: item.label } : { target: item.target };
    const status = stats.add(found.prediction, truth);
    if (status === "correct" || status === "wrong") {
      watchErrors(model, found.prediction.version, status === "wrong");
      opts.onJoined?.();
    }
    return { id: item.id, status };
  };

  return {
    stats,
    driftAlarms: () => [...alarmCounts.values()].map((c) => ({ ...c })),
    recordPrediction(r) {
      const first = Object.values(r.outputs)[0];
      const summary = first ? summarise(first) : null;
      if (!summary) return;
      window.record({
        model: r.model,
        id: r.id,
        version: r.version,
        arm: r.arm ?? null,
        at: opts.clock.now(),
        summary,
      });
    },
    register(server) {
      server.post<{ Params: { model: string } }>("/v2/models/:model/feedback", async (req, reply) => {
        const parsed = BodySchema.safeParse(req.body);
        if (!parsed.success) {
          throw new EdgeFleetError(
            "BAD_REQUEST",
            `feedback must be {id, label} or {id, target: number[]} or {feedback: [...]}: ${parsed.error.issues[0]?.message ?? "invalid"}`,
          );
        }
        const model = req.params.model;
        if ("feedback" in parsed.data) {
          // Batches answer 200 with a status per item, so one late id does not refuse the rest.
          const results = parsed.data.feedback.map((f) => join(model, f));
          return {
            joined: results.filter((r) => !["unknown", "expired", "already-joined"].includes(r.status)).length,
            results,
          };
        }
        const r = join(model, parsed.data);
        if (r.status === "unknown" || r.status === "expired") {
          throw new EdgeFleetError(
            "NOT_FOUND",
            r.status === "expired"
              ? `prediction ${r.id} of ${model} is older than the feedback horizon (${config.horizonMs / 1000} s)`
              : `no recent prediction of ${model} has id ${r.id} (ids come from the infer request's "id"; the window keeps the last ${config.capacity})`,
            { details: { reason: r.status } },
          );
        }
        if (r.status === "already-joined") {
          throw new EdgeFleetError("CONFLICT", `prediction ${r.id} of ${model} already has feedback`);
        }
        return reply.send({ joined: 1, results: [r] });
      });
      server.get<{ Params: { model: string } }>("/v2/models/:model/feedback", async (req) => ({
        model: req.params.model,
        stats: stats.snapshot(req.params.model).map((s) => ({
          ...s,
          conceptDrift: lastDrift.get(`${s.model}\u0000${s.version}`) ?? null,
        })),
      }));
    },
  };
}
