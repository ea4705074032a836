import { canonicalJson } from "../../shared/canonical-json.js";
import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import type { DeviceEvent } from "../../shared/schemas/device-state.js";
import type { Root } from "../../shared/schemas/trust.js";
import type { AgentStore } from "../store/agent-store.js";
import { verifyDesiredState } from "../trust/verify-desired.js";

/**
 * The door for a desired-state document (DESIGN §3/§5): a retained re-delivery of the accepted one
 * is ignored; anything else is verified (signatures, sequence, expiry, counters, bad bundles) and
 * either stored as the accepted state or rejected with a `desired.rejected` event. True when a new
 * document was accepted (the caller then reconciles).
 */
export function acceptDesired(
  payload: unknown,
  deps: {
    log: Logger;
    clock: Clock;
    store: AgentStore;
    root: () => Root;
    deviceId: string;
    publishEvent(e: DeviceEvent): void;
  },
): boolean {
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
    deps.log.warn({ error: result.error, seq: result.seq }, "desired state rejected");
    deps.publishEvent({
      type: "desired.rejected",
      deviceId: deps.deviceId,
      ts: new Date(clock.now()).toISOString(),
      eventSeq: store.nextEventSeq(),
      seq: result.seq,
      error: result.error,
    });
    return false;
  }
  store.acceptDesired(result.value.desired.seq, result.value.raw);
  return true;
}
