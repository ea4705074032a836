import type { FeedbackSummary } from "../../shared/http/models.js";
import type { ReportedState } from "../../shared/schemas/device-state.js";

/**
 * The fleet's view of ground-truth feedback for one model (issue 22, `GET /v1/models/{n}/feedback`):
 * the joined counts every device reports in `reported.models[].feedback`, summed per version and
 * A/B arm, with how many devices contributed; and the bandit splits the devices run now (their
 * reported `side.banditWeight`). Counts are since each agent started (the window is in memory).
 * Pure: the caller chooses the devices (all, or a cohort by tags).
 */
export function summariseFeedback(
  model: string,
  devices: readonly { reported: ReportedState | null }[],
): FeedbackSummary {
  const byKey = new Map<string, FeedbackSummary["versions"][number]>();
  const weights: number[] = [];
  const traffic = { candidate: 0, control: 0 };
  let reporting = 0;
  for (const d of devices) {
    const m = d.reported?.models.find((x) => x.model === model);
    if (!m) continue;
    if (m.side?.banditWeight !== undefined) {
      weights.push(m.side.banditWeight);
      // Each arm's requests since the split started: the side's health and its serving baseline.
      traffic.candidate += m.side.health.requests;
      traffic.control += m.side.baseline?.requests ?? 0;
    }
    if (!m.feedback || m.feedback.length === 0) continue;
    reporting++;
    for (const f of m.feedback) {
      const key = `${f.version}\u0000${f.arm ?? ""}`;
      const row = byKey.get(key) ?? {
        version: f.version,
        arm: f.arm,
        devices: 0,
        joined: 0,
        correct: 0,
        accuracy: null,
        regression: null,
      };
      row.devices++;
      row.joined += f.joined;
      row.correct += f.correct;
      // Pooled over devices by element count: sums of |e| and e² are what add up.
      if (f.regression) {
        const r = row.regression ?? { count: 0, mae: 0, rmse: 0 };
        const n = r.count + f.regression.count;
        r.mae = (r.mae * r.count + f.regression.mae * f.regression.count) / n;
        r.rmse = Math.sqrt((r.rmse ** 2 * r.count + f.regression.rmse ** 2 * f.regression.count) / n);
        r.count = n;
        row.regression = r;
      }
      byKey.set(key, row);
    }
  }
  const versions = [...byKey.values()]
    .map((r) => ({ ...r, accuracy: r.joined > 0 ? r.correct / r.joined : null }))
    .sort((a, b) => {
      const [x, y] = a.version === b.version ? [a.arm ?? "", b.arm ?? ""] : [a.version, b.version];
      return x < y ? -1 : x > y ? 1 : 0;
    });
  return {
    model,
    devices: devices.length,
    reportingDevices: reporting,
    versions,
    bandit:
      weights.length === 0
        ? null
        : {
            devices: weights.length,
            meanCandidateShare: weights.reduce((a, b) => a + b, 0) / weights.length,
            minCandidateShare: Math.min(...weights),
            maxCandidateShare: Math.max(...weights),
            candidateRequests: traffic.candidate,
            controlRequests: traffic.control,
          },
  };
}
