/** What a simulated device publishes as its reported state (shared/schemas/device-state.ts). */
export interface Committed {
  version: string;
  variant: string;
  sha256: string;
  releaseCounter: number;
}

/**
 * A reported state (shared/schemas/device-state.ts): nothing installed, `committed` after a passed
 * probation, or (a failing device, issue 14's gate scenario) `reverted` after a failed one, with the
 * version it had before still committed.
 */
export function reported(
  id: string,
  lastDesiredSeq: number,
  model: string | null,
  committed: Committed | null,
  rolloutId: string | null,
  failedCandidate: Committed | null = null,
): string {
  const now = new Date().toISOString();
  const health = (c: Committed) => ({
    version: c.version,
    sha256: c.sha256,
    requests: 100,
    errors: 0,
    nonFinite: 0,
    p50Ms: 0.5,
    p95Ms: 0.9,
    hostRestarts: 0,
    rssBytes: 50_000_000,
    shadowAgreementPercent: null,
  });
  const failedEntry = (c: Committed) => ({
    model,
    state: "reverted",
    committed,
    candidate: c,
    error: { code: "ERROR_RATE_EXCEEDED", message: "simulated: the candidate failed its probation" },
    rolloutId,
    probation: {
      verdict: "failed",
      reason: "ERROR_RATE_EXCEEDED",
      message: "simulated",
      startedAt: now,
      endedAt: now,
      candidate: { ...health(c), errors: 100 },
      baseline: committed ? health(committed) : null,
    },
  });
  const models =
    model && failedCandidate
      ? [failedEntry(failedCandidate)]
      : model && committed
        ? [
            {
              model,
              state: "committed",
              committed,
              candidate: null,
              rolloutId,
              probation: {
                verdict: "passed",
                startedAt: now,
                endedAt: now,
                candidate: health(committed),
                baseline: null,
              },
            },
          ]
        : [];
  return JSON.stringify({
    deviceId: id,
    agentVersion: "0.1.0",
    profile: "generic-x64",
    arch: "x64",
    ts: now,
    lastDesiredSeq,
    models,
  });
}
