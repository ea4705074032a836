import type { DeviceChange, RolloutChange } from "../../shared/http/dashboard.js";

/**
 * What changed between two looks at the fleet (pure): the dashboard's event stream is a diff of the
 * same summaries the API answers, so a page that applies the events sees what a reload would show,
 * and no service needs to know the dashboard exists.
 */
export type FeedEvent = { type: "rollout"; data: RolloutChange } | { type: "device"; data: DeviceChange };

/** The fingerprint of everything an event carries, by id. */
export type Fingerprints = Map<string, string>;

export function diffSnapshot<T extends { id: string }>(
  previous: Fingerprints,
  items: readonly T[],
): { changed: T[]; next: Fingerprints } {
  const next: Fingerprints = new Map();
  const changed: T[] = [];
  for (const item of items) {
    const print = JSON.stringify(item);
    next.set(item.id, print);
    if (previous.get(item.id) !== print) changed.push(item);
  }
  return { changed, next };
}

/** A bounded ring of events with increasing ids, for replay to a client that reconnects. */
export interface EventRing {
  push(e: FeedEvent): number;
  /** The events after `since`, or null when some of them are gone (the client must re-read). */
  after(since: number): { id: number; event: FeedEvent }[] | null;
  lastId(): number;
  /** Forget continuity: events between the last id and now were not observed (no one watched). */
  gap(): void;
}

export function createEventRing(capacity = 1000): EventRing {
  const ring: { id: number; event: FeedEvent }[] = [];
  let last = 0;
  /** The lowest `since` the ring can still answer exactly. */
  let floor = 0;
  return {
    push(event) {
      last += 1;
      ring.push({ id: last, event });
      if (ring.length > capacity) floor = ring.shift()!.id;
      return last;
    },
    after(since) {
      if (since === 0) return [];
      if (since < floor || since > last) return null;
      return ring.filter((e) => e.id > since);
    },
    lastId: () => last,
    gap() {
      floor = last;
      ring.length = 0;
    },
  };
}
