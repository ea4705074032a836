import { canonicalJson } from "../../shared/canonical-json.js";
import type { Clock } from "../../shared/clock.js";
import { EdgeFleetError, type ErrorJson } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { Root } from "../../shared/schemas/trust.js";
import type { AgentStore } from "../store/agent-store.js";
import { verifyDesiredState } from "../trust/verify-desired.js";

/** Size cap before parsing (issue 7): a hostile broker must not make us parse a huge document. */
export const MAX_DESIRED_BYTES = 4 * 1024 * 1024;

/**
 * Raw `desired` payload → JSON, or why not. A payload that is too large or not JSON is a rejection
 * like any other and is reported as `desired.rejected` (issue 20 §5), not only logged.
 */
export function decodeDesired(
  payload: Buffer,
  maxBytes = MAX_DESIRED_BYTES,
): { ok: true; json: unknown } | { ok: false; error: ErrorJson } {
  if (payload.length > maxBytes) {
    return {
      ok: false,
      error: new EdgeFleetError("PAYLOAD_TOO_LARGE", `desired state of ${payload.length} bytes > ${maxBytes}`).toJSON(),
    };
  }
  try {
    return { ok: true, json: JSON.parse(payload.toString("utf8")) };
  } catch {
    return { ok: false, error: new EdgeFleetError("VALIDATION_FAILED", "desired state is not JSON").toJSON() };
  }
}

type DesiredDeps = {
  log: Logger;
  clock: Clock;
  store: AgentStore;
  root: () => Root;
  deviceId: string;
  publishEvent(e: DeviceEvent): void;
};

/** Logs and reports a refused desired state (`seq` null when it could not be read). */
export function rejectDesired(error: ErrorJson, seq: number | null, deps: Omit<DesiredDeps, "root">): void {
  deps.log.warn({ error, seq }, "desired state rejected");
  deps.publishEvent({
    type: "desired.rejected",
    deviceId: deps.deviceId,
    ts: new Date(deps.clock.now()).toISOString(),
    eventSeq: deps.store.nextEventSeq(),
    seq,
    error,
  });
}

/**
 * The door for a desired-state document (architecture.md §3/§5): a retained re-delivery of the accepted one
 * is ignored; anything else is verified (signatures, sequence, expiry, counters, bad bundles) and
 * either stored as the accepted state or rejected with a `desired.rejected` event. True when a new
 * document was accepted (the caller then reconciles).
 */
export function acceptDesired(payload: unknown, deps: DesiredDeps): boolean {
  const { store, clock } = deps;
  const last = store.lastDesired();
  if (last && canonicalJson(last.document) === canonicalJson(payload)) return false;
  const result = verifyDesiredState(payload, {
    root: deps.root(),
    deviceId: deps.deviceId,
    lastSeq: last?.seq ?? 0,
    now: clock.now(),
    highestCounters: store.highestCounters(),
    badBundles: store.badBundles(),
  });
  if (!result.ok) {
    rejectDesired(result.error, result.seq, deps);
    return false;
  }
  store.acceptDesired(result.value.desired.seq, result.value.raw);
  return true;
}
