/** Pure aggregation of one model version's inference records per cohort (health endpoint, gates). */

export interface InferenceRow {
  cohort: string;
  deviceId: string;
  ok: number;
  latencyMs: number;
  nonFinite: number;
}

export interface CohortHealth {
  cohort: string;
  devices: number;
  requests: number;
  failures: number;
  errorRate: number | null;
  nonFiniteOutputs: number;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

function summarize(cohort: string, rows: readonly InferenceRow[]): CohortHealth {
  const latencies = rows
    .filter((r) => r.ok === 1)
    .map((r) => r.latencyMs)
    .sort((a, b) => a - b);
  const failures = rows.filter((r) => r.ok !== 1).length;
  const round = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    cohort,
    devices: new Set(rows.map((r) => r.deviceId)).size,
    requests: rows.length,
    failures,
    errorRate: rows.length > 0 ? failures / rows.length : null,
    nonFiniteOutputs: rows.reduce((a, r) => a + (r.nonFinite ?? 0), 0),
    p50Ms: round(percentile(latencies, 50)),
    p95Ms: round(percentile(latencies, 95)),
    p99Ms: round(percentile(latencies, 99)),
  };
}

/** The whole version, then each cohort (stage-N for devices in a rollout stage, else "all"). */
export function versionHealth(rows: readonly InferenceRow[]): { total: CohortHealth; cohorts: CohortHealth[] } {
  const byCohort = new Map<string, InferenceRow[]>();
  for (const r of rows) {
    const c = r.cohort ?? "all";
    byCohort.set(c, [...(byCohort.get(c) ?? []), r]);
  }
  return {
    total: summarize("*", rows),
    cohorts: [...byCohort.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([c, rs]) => summarize(c, rs)),
  };
}
