import type { FeedbackFigures } from "../../shared/schemas/device-state.js";
import type { Prediction } from "./prediction-window.js";

/** Ground truth for one prediction: a class label, or a target for a regression output. */
export type Truth = { label: number } | { target: number[] };

/** Figures per model version and A/B arm (issue 22): classification and regression kept apart. */
export interface ArmStats {
  model: string;
  version: string;
  arm: string | null;
  classification: {
    count: number;
    correct: number;
    accuracy: number | null;
    /** confusion[truth][predicted] = count, over the labels seen. */
    confusion: Record<string, Record<string, number>>;
  };
  regression: { count: number; mae: number | null; rmse: number | null };
  /** Feedback whose kind did not fit the prediction (a label for a regression output, a target of another length). */
  mismatched: number;
}

interface Acc {
  model: string;
  version: string;
  arm: ArmStats["arm"];
  n: number;
  correct: number;
  confusion: Map<number, Map<number, number>>;
  rn: number;
  absSum: number;
  sqSum: number;
  mismatched: number;
}

export type JoinOutcome = "correct" | "wrong" | "regression" | "mismatched";

export interface FeedbackStats {
  /** Adds one joined (prediction, truth) pair; says how it counted. */
  add(p: Prediction, truth: Truth): JoinOutcome;
  snapshot(model?: string): ArmStats[];
}

/** Labels past this many distinct ones are folded into "other" so a bad client cannot grow memory. */
const MAX_LABELS = 256;

export function createFeedbackStats(): FeedbackStats {
  const accs = new Map<string, Acc>();
  const accFor = (p: Prediction): Acc => {
    const k = `${p.model}\u0000${p.version}\u0000${p.arm ?? ""}`;
    let a = accs.get(k);
    if (!a) {
      a = {
        model: p.model,
        version: p.version,
        arm: p.arm,
        n: 0,
        correct: 0,
        confusion: new Map(),
        rn: 0,
        absSum: 0,
        sqSum: 0,
        mismatched: 0,
      };
      accs.set(k, a);
    }
    return a;
  };
  return {
    add(p, truth) {
      const a = accFor(p);
      if ("label" in truth) {
        if (p.summary.kind !== "class") {
          a.mismatched++;
          return "mismatched";
        }
        a.n++;
        const ok = p.summary.label === truth.label;
        if (ok) a.correct++;
        // Rows are the truth's labels; past MAX_LABELS distinct ones they share the row "other".
        const rowKey = a.confusion.has(truth.label) || a.confusion.size < MAX_LABELS ? truth.label : -1;
        let rowMap = a.confusion.get(rowKey);
        if (!rowMap) {
          rowMap = new Map();
          a.confusion.set(rowKey, rowMap);
        }
        rowMap.set(p.summary.label, (rowMap.get(p.summary.label) ?? 0) + 1);
        return ok ? "correct" : "wrong";
      }
      const values = p.summary.kind === "values" ? p.summary.values : null;
      if (!values || truth.target.length !== values.length) {
        a.mismatched++;
        return "mismatched";
      }
      for (let i = 0; i < values.length; i++) {
        const e = values[i]! - truth.target[i]!;
        a.absSum += Math.abs(e);
        a.sqSum += e * e;
        a.rn++;
      }
      return "regression";
    },
    snapshot(model) {
      return [...accs.values()]
        .filter((a) => model === undefined || a.model === model)
        .map((a) => ({
          model: a.model,
          version: a.version,
          arm: a.arm,
          classification: {
            count: a.n,
            correct: a.correct,
            accuracy: a.n > 0 ? a.correct / a.n : null,
            confusion: Object.fromEntries(
              [...a.confusion].map(([t, row]) => [
                t === -1 ? "other" : String(t),
                Object.fromEntries([...row].map(([k, v]) => [String(k), v])),
              ]),
            ),
          },
          regression: {
            count: a.rn,
            mae: a.rn > 0 ? a.absSum / a.rn : null,
            rmse: a.rn > 0 ? Math.sqrt(a.sqSum / a.rn) : null,
          },
          mismatched: a.mismatched,
        }));
    },
  };
}

/**
 * The classification counts per model for the `reported` document (issue 22): what the fleet's
 * accuracy gate pools across devices. Versions and arms with no joined label are left out; at most
 * `max` entries per model, the most recently created kept (the schema's bound). Pure.
 */
export function reportedFigures(stats: readonly ArmStats[], max = 16): Map<string, FeedbackFigures[]> {
  const out = new Map<string, FeedbackFigures[]>();
  for (const s of stats) {
    const r = s.regression;
    if (s.classification.count === 0 && r.count === 0) continue;
    const list = out.get(s.model) ?? [];
    const f: FeedbackFigures = {
      version: s.version,
      arm: s.arm,
      joined: s.classification.count,
      correct: s.classification.correct,
    };
    if (r.count > 0 && r.mae !== null && r.rmse !== null) f.regression = { count: r.count, mae: r.mae, rmse: r.rmse };
    list.push(f);
    out.set(s.model, list);
  }
  for (const [m, list] of out) if (list.length > max) out.set(m, list.slice(-max));
  return out;
}

/**
 * The rewards of an A/B split's two arms for the bandit (issue 22): joined classification labels of
 * the serving version on the control arm and of the split's candidate on the candidate arm. Pure.
 */
export function armRewards(
  stats: readonly ArmStats[],
  serving: { installed: { version: string } } | undefined,
  strategy: { mode: string; candidate: { version: string } } | null,
): { control: { joined: number; correct: number }; candidate: { joined: number; correct: number } } {
  const of = (version: string | undefined, arm: string) => {
    const s = stats.find((x) => x.version === version && x.arm === arm);
    return { joined: s?.classification.count ?? 0, correct: s?.classification.correct ?? 0 };
  };
  return {
    control: of(serving?.installed.version, "control"),
    candidate: of(strategy?.candidate.version, "candidate"),
  };
}
