import type { Assignment } from "../../shared/schemas/desired-state.js";
import type { ReportedState } from "../../shared/schemas/device-state.js";

/** What the desired-state signer needs of the delta service: settled builds only (it runs in a transaction). */
export interface DeltaLookup {
  peek(base: string, target: string): { sha256: string; size: number; base: string } | null;
  ensure(base: string, target: string): Promise<unknown>;
}

/** The bundle the device reports committed for `model`, if any. */
export function committedBundle(reported: ReportedState | null | undefined, model: string): string | null {
  return reported?.models.find((m) => m.model === model)?.committed?.sha256 ?? null;
}

/**
 * Deltas are chosen per device from its reported committed version (issue 17): every assignment's delta is
 * recomputed, so one carried over from an older document never names a base the device no longer has. Only
 * active assignments get one (a shadow or A/B side runs beside the committed version, which it does not
 * replace; the saving is the same, but the fallback paths would double).
 */
export function withDeltas(
  assignments: readonly Assignment[],
  reported: ReportedState | null | undefined,
  deltas: Pick<DeltaLookup, "peek"> | undefined,
): Assignment[] {
  if (!deltas) return [...assignments];
  return assignments.map((a) => {
    const { delta: _stale, ...plain } = a;
    const base = committedBundle(reported, a.model);
    if (a.strategy.mode !== "active" || !base || base === a.bundle.sha256) return plain;
    const delta = deltas.peek(base, a.bundle.sha256);
    return delta ? { ...plain, delta } : plain;
  });
}

/** Builds (or waits for) the delta from the device's committed bundle to `target`, so `withDeltas` can offer it. */
export async function prepareDelta(
  deltas: DeltaLookup | undefined,
  reported: ReportedState | null | undefined,
  model: string,
  target: string,
): Promise<void> {
  const base = committedBundle(reported, model);
  if (deltas && base && base !== target) await deltas.ensure(base, target);
}
