import type { ServerResponse } from "node:http";
import type { DeviceChange, RolloutChange } from "../../shared/http/dashboard.js";
import type { Logger } from "../../shared/logger.js";
import { createEventRing, diffSnapshot, type FeedEvent, type Fingerprints } from "./change-feed.js";

/** What the hub reads each tick: the same summaries `GET /v1/rollouts` and `GET /v1/devices` answer. */
export interface FeedSources {
  rollouts(): RolloutChange[];
  devices(): DeviceChange[];
}

export interface EventHub {
  /** Streams events to `res` (already sent its SSE headers) from after `since` until it closes. */
  attach(res: ServerResponse, since: number): void;
  /** Ends every stream and stops the timer (server shutdown). */
  close(): void;
}

const HEARTBEAT_MS = 15_000;

/**
 * The executor behind `GET /v1/events`: while at least one client listens it looks at the fleet
 * every `intervalMs` and sends what changed (change-feed.ts). Nobody listening: no timer, no cost.
 * Polling the summaries rather than hooking every service keeps the stream exactly as true as the
 * API (a change the API shows is a change the stream sends) at one cheap read per second.
 */
export function createEventHub(sources: FeedSources, log: Logger, intervalMs = 1000): EventHub {
  const ring = createEventRing();
  const clients = new Set<ServerResponse>();
  let rollouts: Fingerprints = new Map();
  let devices: Fingerprints = new Map();
  let timer: NodeJS.Timeout | null = null;
  let beat: NodeJS.Timeout | null = null;

  const write = (res: ServerResponse, id: number, e: FeedEvent) => {
    res.write(`id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
  };
  const look = () => {
    try {
      const r = diffSnapshot(rollouts, sources.rollouts());
      const d = diffSnapshot(devices, sources.devices());
      rollouts = r.next;
      devices = d.next;
      const events: FeedEvent[] = [
        ...r.changed.map((data) => ({ type: "rollout" as const, data })),
        ...d.changed.map((data) => ({ type: "device" as const, data })),
      ];
      for (const e of events) {
        const id = ring.push(e);
        for (const res of clients) write(res, id, e);
      }
    } catch (err) {
      log.warn({ err }, "dashboard event feed: reading the fleet failed");
    }
  };
  const start = () => {
    // Nothing was watched since the last client left: changes in between were not seen.
    ring.gap();
    rollouts = diffSnapshot(new Map(), sources.rollouts()).next;
    devices = diffSnapshot(new Map(), sources.devices()).next;
    timer = setInterval(look, intervalMs);
    beat = setInterval(() => {
      for (const res of clients) res.write(": keep-alive\n\n");
    }, HEARTBEAT_MS);
    timer.unref();
    beat.unref();
  };
  const stop = () => {
    if (timer) clearInterval(timer);
    if (beat) clearInterval(beat);
    timer = beat = null;
  };

  return {
    attach(res, since) {
      if (clients.size === 0) start();
      const missed = ring.after(since);
      // `retry`: how long the browser waits before reconnecting (our client honours it too).
      res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ lastId: ring.lastId() })}\n\n`);
      if (missed === null) res.write(`id: ${ring.lastId()}\nevent: reset\ndata: {}\n\n`);
      else for (const m of missed) write(res, m.id, m.event);
      clients.add(res);
      res.on("close", () => {
        clients.delete(res);
        if (clients.size === 0) stop();
      });
    },
    close() {
      stop();
      for (const res of clients) res.end();
      clients.clear();
    },
  };
}
