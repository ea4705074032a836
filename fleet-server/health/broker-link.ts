import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";

/**
 * What the fleet server knows about its own MQTT connection (issue 20 §4). Everything the server
 * learns about devices arrives over that one link, so while it is down the server's picture of
 * the fleet is frozen: health, readiness, presence and the metrics all read this one state.
 */
export interface BrokerLinkState {
  kind: "embedded" | "external";
  connected: boolean;
  /** When the current state (connected or not) began, ms since the epoch. */
  since: number;
  /** Why the link is down (the last connection error, or that the broker closed it); null while up. */
  reason: string | null;
  /** Connections lost since start (each loss once, however many reconnect attempts follow). */
  disconnects: number;
  /**
   * When each loss began, oldest first: a device is known again only once it is heard after the
   * loss that followed its last message (`presenceOf`). Bounded: after `MAX_OUTAGES` losses the
   * oldest are dropped, and a device silent for that long is dated by the oldest one kept.
   */
  outages: readonly number[];
}

export interface BrokerLink {
  state(): BrokerLinkState;
  /** The transport connected (first connect, or a reconnect). */
  up(): void;
  /** The transport lost its connection or failed a reconnect attempt; `error` says why when known. */
  down(error?: string): void;
  /** Called on each reconnect after a loss (not on the first connect). */
  onReconnect(listener: () => void): void;
  /** Called on each change between connected and not (after the first connect). */
  onChange(listener: (s: BrokerLinkState) => void): void;
  /** The server is shutting down: its own disconnect is not an outage. */
  stop(): void;
}

export const MAX_OUTAGES = 1024;

export function createBrokerLink(deps: { clock: Clock; log: Logger; kind: "embedded" | "external" }): BrokerLink {
  const { clock, log } = deps;
  // Not connected until the transport's first CONNACK; the HTTP API only listens after it.
  let state: BrokerLinkState = {
    kind: deps.kind,
    connected: false,
    since: clock.now(),
    reason: "not connected yet",
    disconnects: 0,
    outages: [],
  };
  let everUp = false;
  let stopped = false;
  const reconnectListeners: (() => void)[] = [];
  const changeListeners: ((s: BrokerLinkState) => void)[] = [];
  const changed = () => {
    for (const l of changeListeners) l(state);
  };

  return {
    state: () => state,
    up() {
      if (state.connected || stopped) return;
      const wasLost = everUp;
      everUp = true;
      state = { ...state, connected: true, since: clock.now(), reason: null };
      if (wasLost) log.info({ disconnects: state.disconnects }, "broker link restored; re-reading retained state");
      changed();
      if (wasLost) for (const l of reconnectListeners) l();
    },
    down(error) {
      if (stopped) return;
      if (!state.connected) {
        // A failed reconnect attempt: same outage, but the newest reason is the useful one.
        if (everUp && error !== undefined) state = { ...state, reason: error };
        return;
      }
      const now = clock.now();
      state = {
        ...state,
        connected: false,
        since: now,
        reason: error ?? "connection closed",
        disconnects: state.disconnects + 1,
        outages: [...state.outages, now].slice(-MAX_OUTAGES),
      };
      log.warn({ reason: state.reason }, "broker link lost: device presence is unknown until it returns");
      changed();
    },
    onReconnect: (l) => void reconnectListeners.push(l),
    onChange: (l) => void changeListeners.push(l),
    stop: () => {
      stopped = true;
    },
  };
}
