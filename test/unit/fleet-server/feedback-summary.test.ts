import { describe, expect, it } from "vitest";
import { summariseFeedback } from "../../../fleet-server/registry/feedback-summary.js";
import type { FeedbackFigures, ReportedState } from "../../../shared/schemas/device-state.js";

const device = (feedback: FeedbackFigures[], banditWeight?: number): { reported: ReportedState } => ({
  reported: {
    deviceId: "d",
    agentVersion: "0.1.0",
    profile: "generic-x64",
    arch: "x64",
    ts: "2026-12-03T00:00:00.000Z",
    lastDesiredSeq: 1,
    models: [
      {
        model: "m",
        state: "committed",
        committed: null,
        candidate: null,
        rolloutId: null,
        feedback,
        ...(banditWeight !== undefined
          ? {
              side: {
                mode: "ab" as const,
                version: "2.0.0",
                sha256: "b".repeat(64),
                state: "committed" as const,
                health: {
                  version: "2.0.0",
                  sha256: "b".repeat(64),
                  requests: 0,
                  errors: 0,
                  nonFinite: 0,
                  p50Ms: null,
                  p95Ms: null,
                  hostRestarts: 0,
                  rssBytes: null,
                  shadowAgreementPercent: null,
                },
                baseline: null,
                banditWeight,
              },
            }
          : {}),
      },
    ],
  },
});

/** The fleet's feedback view (issue 22): sums per version and arm; regression pooled by element count. */
describe("summariseFeedback", () => {
  it("sums classification counts per version and arm, and pools MAE/RMSE by element count", () => {
    const s = summariseFeedback("m", [
      device([
        { version: "1.0.0", arm: null, joined: 10, correct: 9 },
        { version: "2.0.0", arm: "candidate", joined: 0, correct: 0, regression: { count: 100, mae: 1, rmse: 2 } },
      ]),
      device(
        [
          { version: "1.0.0", arm: null, joined: 30, correct: 15 },
          { version: "2.0.0", arm: "candidate", joined: 0, correct: 0, regression: { count: 300, mae: 3, rmse: 4 } },
        ],
        0.8,
      ),
      { reported: null },
    ]);
    expect(s.devices).toBe(3);
    expect(s.reportingDevices).toBe(2);
    expect(s.versions[0]).toEqual({
      version: "1.0.0",
      arm: null,
      devices: 2,
      joined: 40,
      correct: 24,
      accuracy: 0.6,
      regression: null,
    });
    const reg = s.versions[1]!.regression!;
    expect(reg.count).toBe(400);
    // MAE: (100·1 + 300·3) / 400; RMSE: sqrt((100·4 + 300·16) / 400).
    expect(reg.mae).toBeCloseTo(2.5, 12);
    expect(reg.rmse).toBeCloseTo(Math.sqrt(13), 12);
    expect(s.versions[1]!.accuracy).toBeNull();
    expect(s.bandit).toEqual({
      devices: 1,
      meanCandidateShare: 0.8,
      minCandidateShare: 0.8,
      maxCandidateShare: 0.8,
      candidateRequests: 0,
      controlRequests: 0,
    });
  });
});
