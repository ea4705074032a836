/**
 * Which int8 build becomes the version's int8 variant, pure (issue 17). The server may build two:
 * weight-only/dynamic ("int8-weights") and static with calibration ("int8-static"). Both are
 * validated under the same accuracy policy and timed against fp32 on the server's CPU; the
 * variant keeps one name ("int8": devices, profiles and rollouts are unchanged) and the report's
 * `method` says which kind it is, with the other build under `alternatives`.
 */
export interface Int8Candidate {
  method: "int8-weights" | "int8-static";
  passed: boolean;
  sizeRatio: number;
  latencyRatio: number;
}

/**
 * Latency ratios within this factor of each other are a tie (the server's timing budget is
 * 400 ms per upload on a shared CPU): the smaller file wins a tie.
 */
export const LATENCY_TIE = 0.05;

/**
 * 1. a build that passes the policy beats one that does not;
 * 2. when neither passes, weight-only (the variant is not published either way; its report is
 *    the one operators know, and the answer must not depend on timing noise: `models validate`
 *    offline and the server must report the same failures);
 * 3. between two that pass, the faster on the server's CPU, unless they are within LATENCY_TIE
 *    of each other; then the smaller; then weight-only (the older, simpler graph).
 * Returns the winner and, for the loser, why it lost (recorded in the report).
 */
export function chooseInt8<C extends Int8Candidate>(
  candidates: readonly C[],
): { chosen: C; others: { candidate: C; reason: string }[] } | null {
  if (candidates.length === 0) return null;
  const sorted = [...candidates].sort(compare);
  const chosen = sorted[0]!;
  const others = sorted.slice(1).map((c) => ({ candidate: c, reason: whyLost(c, chosen) }));
  return { chosen, others };
}

function compare(a: Int8Candidate, b: Int8Candidate): number {
  if (a.passed !== b.passed) return a.passed ? -1 : 1;
  if (!a.passed && a.method !== b.method) return a.method === "int8-weights" ? -1 : 1;
  const faster = Math.min(a.latencyRatio, b.latencyRatio);
  if (Math.abs(a.latencyRatio - b.latencyRatio) > LATENCY_TIE * faster) return a.latencyRatio - b.latencyRatio;
  if (a.sizeRatio !== b.sizeRatio) return a.sizeRatio - b.sizeRatio;
  return a.method === b.method ? 0 : a.method === "int8-weights" ? -1 : 1;
}

function whyLost(c: Int8Candidate, chosen: Int8Candidate): string {
  if (!c.passed && chosen.passed) return "failed the accuracy policy";
  if (!c.passed) return "neither build passed the policy: weight-only is reported";
  const faster = Math.min(c.latencyRatio, chosen.latencyRatio);
  if (Math.abs(c.latencyRatio - chosen.latencyRatio) > LATENCY_TIE * faster) {
    return `slower on the server's CPU (${c.latencyRatio} vs ${chosen.latencyRatio} of fp32)`;
  }
  if (c.sizeRatio !== chosen.sizeRatio) return `as fast, larger (${c.sizeRatio} vs ${chosen.sizeRatio} of fp32)`;
  return "as fast and as large: weight-only preferred";
}
