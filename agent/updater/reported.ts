import type { ErrorJson } from "../../shared/errors.js";
import type {
  CostFigures,
  FeedbackFigures,
  ProbationReport,
  ReportedModel,
  ReportedSide,
  ReportedState,
  ReportedStorage,
} from "../../shared/schemas/device-state.js";
import type { ModelRecord } from "../store/agent-store.js";

export interface ReportedInputs {
  deviceId: string;
  agentVersion: string;
  profile: string;
  arch: string;
  now: number;
  lastDesiredSeq: number;
  models: readonly ModelRecord[];
  /** Live download progress per model (only meaningful while `downloading`). */
  progress: ReadonlyMap<string, { bytes: number; total: number }>;
  /** The current or last probation report per model. */
  probation?: ReadonlyMap<string, ProbationReport>;
  /** Swaps currently waiting for update locks, per model. */
  deferring?: ReadonlyMap<string, NonNullable<ReportedModel["deferring"]>>;
  /** Side candidates (shadow / A-B) per model, with their live health. */
  sides?: ReadonlyMap<string, ReportedSide>;
  /** Storage faults and telemetry losses (issue 20 §2). */
  storage?: ReportedStorage;
  /** Joined ground-truth counts per model (issue 22). */
  feedback?: ReadonlyMap<string, FeedbackFigures[]>;
  /** CPU, predictions and memory per model version (issue 22, cost per prediction). */
  cost?: ReadonlyMap<string, CostFigures[]>;
}

/** The retained `reported` document (architecture.md §4/§5): always the current truth, built from the store. Pure. */
export function buildReported(i: ReportedInputs): ReportedState {
  const models = i.models.slice(0, 16).map((m): ReportedModel => {
    const out: ReportedModel = {
      model: m.model,
      state: m.state,
      committed: m.committed,
      candidate: m.candidate,
      rolloutId: m.rolloutId,
    };
    const p = i.progress.get(m.model);
    if (m.state === "downloading" && p) out.progress = p;
    if (m.error) out.error = m.error as ErrorJson;
    const probation = i.probation?.get(m.model);
    if (probation) out.probation = probation;
    const deferring = i.deferring?.get(m.model);
    if (deferring && m.state === "swapping") out.deferring = deferring;
    const side = i.sides?.get(m.model);
    if (side) out.side = side;
    const feedback = i.feedback?.get(m.model);
    if (feedback && feedback.length > 0) out.feedback = feedback;
    const cost = i.cost?.get(m.model);
    if (cost && cost.length > 0) out.cost = cost;
    return out;
  });
  return {
    deviceId: i.deviceId,
    agentVersion: i.agentVersion,
    profile: i.profile,
    arch: i.arch,
    ts: new Date(i.now).toISOString(),
    lastDesiredSeq: i.lastDesiredSeq,
    models,
    ...(i.storage ? { storage: i.storage } : {}),
  };
}
