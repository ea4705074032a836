import type { Clock } from "../../shared/clock.js";
import type { BrokerLink } from "./broker-link.js";
import { type PresenceView, presenceOf } from "./health-decision.js";

/** When this process last heard each device's presence, judged against the broker link (issue 20 §4). */
export interface PresenceTracker {
  /** A presence message from the device arrived (retained re-delivery or live). */
  heard(deviceId: string): void;
  view(device: { id: string; presence: "online" | "offline"; createdAt: string }): PresenceView;
}

export function createPresenceTracker(deps: { clock: Clock; link: BrokerLink }): PresenceTracker {
  // In memory on purpose: the outages it is compared with are this process's own.
  const heardAt = new Map<string, number>();
  return {
    heard: (id) => void heardAt.set(id, deps.clock.now()),
    view: (d) => presenceOf(d.presence, heardAt.get(d.id), Date.parse(d.createdAt), deps.link.state()),
  };
}
