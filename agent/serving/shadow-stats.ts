import { percentile } from "../updater/health-summary.js";

/**
 * Per-version shadow and A/B figures: how often the candidate agreed with the serving version on the
 * same input, and both sides' latencies over the same sampled requests. Bounded memory: latencies
 * keep the last `window` values per version. No I/O.
 */
export interface ShadowFigures {
  model: string;
  version: string;
  sha256: string;
  mode: "shadow" | "ab";
  /** Shadow: comparisons made; A/B: requests the candidate served. */
  compared: number;
  agreed: number;
  /** Requests the shadow/candidate failed on (the caller never saw these failures in shadow mode). */
  errors: number;
  /** Shadow requests skipped because the shadow was busy (never queued behind the caller). */
  skippedBusy: number;
  agreementPercent: number | null;
  candidateP50Ms: number | null;
  candidateP95Ms: number | null;
  controlP50Ms: number | null;
  controlP95Ms: number | null;
}

interface Entry {
  figures: Omit<
    ShadowFigures,
    "agreementPercent" | "candidateP50Ms" | "candidateP95Ms" | "controlP50Ms" | "controlP95Ms"
  >;
  candidateMs: number[];
  controlMs: number[];
}

export interface ShadowStats {
  record(
    who: { model: string; version: string; sha256: string; mode: "shadow" | "ab" },
    r: { agreed?: boolean; ok: boolean; candidateMs?: number; controlMs?: number; skippedBusy?: boolean },
  ): void;
  get(sha256: string): ShadowFigures | null;
  all(): ShadowFigures[];
  /** Forget a version (detached or promoted: the next candidate starts from zero). */
  reset(sha256: string): void;
}

const round3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);

export function createShadowStats(window = 2048): ShadowStats {
  const entries = new Map<string, Entry>();
  const push = (xs: number[], x: number | undefined) => {
    if (x === undefined) return;
    xs.push(x);
    if (xs.length > window) xs.shift();
  };
  const view = (e: Entry): ShadowFigures => ({
    ...e.figures,
    agreementPercent:
      e.figures.compared === 0 ? null : Math.round((e.figures.agreed / e.figures.compared) * 10_000) / 100,
    candidateP50Ms: round3(percentile(e.candidateMs, 50)),
    candidateP95Ms: round3(percentile(e.candidateMs, 95)),
    controlP50Ms: round3(percentile(e.controlMs, 50)),
    controlP95Ms: round3(percentile(e.controlMs, 95)),
  });
  return {
    record(who, r) {
      let e = entries.get(who.sha256);
      if (!e) {
        e = {
          figures: { ...who, compared: 0, agreed: 0, errors: 0, skippedBusy: 0 },
          candidateMs: [],
          controlMs: [],
        };
        entries.set(who.sha256, e);
      }
      if (r.skippedBusy) {
        e.figures.skippedBusy++;
        return;
      }
      if (!r.ok) e.figures.errors++;
      if (r.agreed !== undefined) {
        e.figures.compared++;
        if (r.agreed) e.figures.agreed++;
      }
      push(e.candidateMs, r.candidateMs);
      push(e.controlMs, r.controlMs);
    },
    get(sha256) {
      const e = entries.get(sha256);
      return e ? view(e) : null;
    },
    all: () => [...entries.values()].map(view),
    reset(sha256) {
      entries.delete(sha256);
    },
  };
}
