import type { Variant } from "../../shared/schemas/common.js";
import type { HealthSummary, ProbationReport } from "../../shared/schemas/device-state.js";
import type { VariantMeasurementRow } from "../store/variant-measurement-repo.js";
import { MIN_MEASURED_REQUESTS } from "./choose-variant.js";

/**
 * Pure side of "a device may measure both variants during probation and report which is faster
 * there" (issue 5): a probation report carries the candidate's and the baseline's latency on the
 * same device, so when one is int8 and the other fp32 the device has measured both. The server
 * keeps the latest usable measurement per (device, model, variant); `chooseVariant` compares them
 * at the next rollout.
 */

/** Resolves a bundle hash (built on upload or re-released) to its variant; null when unknown. */
export type VariantOf = (sha256: string) => Variant | null;

/** The measurements one probation report yields: its candidate and baseline, when usable. */
export function measurementsFromReport(input: {
  deviceId: string;
  model: string;
  report: ProbationReport;
  variantOf: VariantOf;
  at: string;
}): VariantMeasurementRow[] {
  const { report } = input;
  const out: VariantMeasurementRow[] = [];
  for (const s of [report.candidate, report.baseline]) {
    const m = s ? fromSummary(input, s) : null;
    if (m) out.push(m);
  }
  return out;
}

function fromSummary(
  input: { deviceId: string; model: string; variantOf: VariantOf; at: string },
  s: HealthSummary,
): VariantMeasurementRow | null {
  // Without a median there is nothing to compare; an unknown bundle has no known variant.
  if (s.p50Ms === null || s.requests === 0) return null;
  const variant = input.variantOf(s.sha256);
  if (variant === null) return null;
  return {
    deviceId: input.deviceId,
    model: input.model,
    variant,
    version: s.version,
    sha256: s.sha256,
    p50Ms: s.p50Ms,
    p95Ms: s.p95Ms,
    requests: s.requests,
    measuredAt: input.at,
  };
}

/**
 * Whether `incoming` replaces what is stored for the same (device, model, variant). Reports
 * repeat (retained `reported` documents, the verdict event) and grow while a probation runs, so:
 * the same bundle's figure is replaced by one over at least as many requests; another bundle's
 * figure replaces a usable one (≥ `minRequests`) only once it is usable itself — a probation that
 * just started, or failed after a few requests, must not erase what the device measured before.
 */
export function shouldReplaceMeasurement(
  stored: Pick<VariantMeasurementRow, "sha256" | "requests"> | null,
  incoming: Pick<VariantMeasurementRow, "sha256" | "requests">,
  minRequests = MIN_MEASURED_REQUESTS,
): boolean {
  if (stored === null) return true;
  if (stored.sha256 === incoming.sha256) return incoming.requests >= stored.requests;
  return incoming.requests >= minRequests || stored.requests < minRequests;
}
