import type { BrokerLinkState } from "./broker-link.js";

/** The broker check as `/healthz` and `/readyz` show it. */
export interface BrokerCheck {
  status: "up" | "down";
  kind: "embedded" | "external";
  /** When the link came up, or when it was lost. */
  since: string;
  disconnects: number;
  /** Present while down: what the operator should know. */
  reason?: string;
}

export interface ProbeAnswer {
  statusCode: 200 | 503;
  body: { status: "ok" | "degraded" | "ready" | "not ready"; checks: { broker: BrokerCheck } };
}

function brokerCheck(link: BrokerLinkState): BrokerCheck {
  const since = new Date(link.since).toISOString();
  const base = { kind: link.kind, since, disconnects: link.disconnects };
  if (link.connected) return { status: "up", ...base };
  return {
    status: "down",
    ...base,
    reason: `no connection to the MQTT broker since ${since} (${link.reason ?? "connection closed"}): device presence, reports and events are not being received`,
  };
}

/**
 * Pure: `GET /healthz`, liveness. Always 200 (issue 20 §4): a server waiting for its broker is
 * alive and reconnects by itself, and a liveness failure would make an orchestrator restart it,
 * which cannot bring the broker back and drops the HTTP API operators are using to find out why.
 * The body says `degraded` with the reason so monitoring still sees it.
 */
export function livenessOf(link: BrokerLinkState): ProbeAnswer {
  const broker = brokerCheck(link);
  return { statusCode: 200, body: { status: broker.status === "up" ? "ok" : "degraded", checks: { broker } } };
}

/**
 * Pure: `GET /readyz`, readiness. 503 while the broker link is down: the server cannot deliver a
 * rollout or see devices then, so a load balancer should prefer a replica that can.
 */
export function readinessOf(link: BrokerLinkState): ProbeAnswer {
  const broker = brokerCheck(link);
  const up = broker.status === "up";
  return { statusCode: up ? 200 : 503, body: { status: up ? "ready" : "not ready", checks: { broker } } };
}

export type Presence = "online" | "offline" | "unknown";

export interface PresenceView {
  presence: Presence;
  /** When the server lost sight of the device (set only while `unknown`). */
  presenceSince: string | null;
  /** The last presence the device announced (what the server stored), shown beside `unknown`. */
  lastKnownPresence: "online" | "offline";
}

/**
 * Pure: the presence to show for a device (issue 20 §4). Presence is a retained message the broker
 * holds for the server, so the stored value is the truth only if this server has heard the device's
 * presence since the last loss of its broker link. A loss after the last message (or after the
 * device was enrolled, when nothing was heard since start) makes it `unknown` from that loss on,
 * until the device's presence arrives again: re-read from the retained message when the link
 * returns, or published anew by the device when it reconnects to a broker that lost its retained
 * messages. A device that died during the outage on such a broker stays `unknown`, which is the
 * truth: nobody can say. A device enrolled while the link is down is `unknown` from its enrollment.
 *
 * `heardAt`: when this server process last received the device's presence (undefined: not yet).
 */
export function presenceOf(
  stored: "online" | "offline",
  heardAt: number | undefined,
  enrolledAt: number,
  link: Pick<BrokerLinkState, "connected" | "outages">,
): PresenceView {
  const ref = heardAt ?? enrolledAt;
  const lostAt = link.outages.find((t) => t >= ref) ?? (link.connected ? undefined : ref);
  if (lostAt === undefined) return { presence: stored, presenceSince: null, lastKnownPresence: stored };
  return { presence: "unknown", presenceSince: new Date(lostAt).toISOString(), lastKnownPresence: stored };
}
