import type { HealthSummary } from "../../shared/schemas/device-state.js";

/** One inference, reduced to what health verdicts need (from the runtime's `InferRecord`). */
export interface HealthSample {
  at: number;
  ok: boolean;
  /** Model execution time in the host (ms); null when the run failed. */
  computeMs: number | null;
  nonFinite: number;
  probe: boolean;
}

/** Nearest-rank percentile of unsorted values; null for an empty list. Pure. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

const round3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);

/**
 * The `HealthSummary` of one version over a set of samples (architecture.md §5; read by the rollout gates).
 * Latency figures are the model's execution time inside its host, so they compare versions rather
 * than how busy the device was. `nonFinite` counts requests with at least one NaN/Inf output. Pure.
 */
export function summarize(
  who: { version: string; sha256: string },
  samples: readonly HealthSample[],
  extra: { hostRestarts: number; rssBytes: number | null },
): HealthSummary {
  const latencies = samples.filter((s) => s.ok && s.computeMs !== null).map((s) => s.computeMs as number);
  return {
    version: who.version,
    sha256: who.sha256,
    requests: samples.length,
    errors: samples.filter((s) => !s.ok).length,
    nonFinite: samples.filter((s) => s.nonFinite > 0).length,
    p50Ms: round3(percentile(latencies, 50)),
    p95Ms: round3(percentile(latencies, 95)),
    hostRestarts: extra.hostRestarts,
    rssBytes: extra.rssBytes,
    shadowAgreementPercent: null,
  };
}
