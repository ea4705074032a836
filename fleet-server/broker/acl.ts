import { DeviceIdSchema } from "../../shared/schemas/common.js";
import { DEVICE_PUBLISHES, DEVICE_SUBSCRIBES, type Topics } from "../../shared/topics.js";

/** Who is on the other end of a broker connection, decided once at CONNECT. */
export type Identity = { kind: "server" } | { kind: "device"; deviceId: string };

export function isValidDeviceUsername(username: string): boolean {
  return DeviceIdSchema.safeParse(username).success;
}

/**
 * Pure ACL (architecture.md §4): a device publishes only on its own DEVICE_PUBLISHES topics and subscribes
 * only to its own DEVICE_SUBSCRIBES topics plus the trust root. Exact topics only — a device
 * never needs a wildcard, and allowing one would let it read other devices' traffic.
 */
export function mayPublish(topics: Topics, who: Identity, topic: string): boolean {
  if (who.kind === "server") return !topic.startsWith("$SYS");
  return DEVICE_PUBLISHES.some((kind) => topics.device(who.deviceId, kind) === topic);
}

export function maySubscribe(topics: Topics, who: Identity, filter: string): boolean {
  if (who.kind === "server") return !filter.startsWith("$SYS");
  if (filter === topics.trustRoot()) return true;
  return DEVICE_SUBSCRIBES.some((kind) => topics.device(who.deviceId, kind) === filter);
}

/**
 * A Last Will is a publish the broker makes on the client's behalf later, so it needs the same
 * right as a publish *and* is narrower: a device's will may only be `offline` on its own presence
 * topic (architecture.md §4, issue 20 §5), which is all the agent ever sets. Checked at CONNECT so a
 * forbidden will never gets stored. (Mosquitto cannot check a will apart from a publish: see
 * docs/security.md "Broker rules" for the rule that holds there.)
 */
export function mayWill(topics: Topics, who: Identity, topic: string, payload: Buffer): boolean {
  if (who.kind === "server") return mayPublish(topics, who, topic);
  return topic === topics.device(who.deviceId, "presence") && payload.toString("utf8") === WILL_PAYLOAD;
}

/** The one will payload a device may set: the agent's `offline` (agent/transport/mqtt-link.ts). */
export const WILL_PAYLOAD = "offline";

/** MQTT wildcards and the level separator have no place in an identity (issue 7). */
export function hasTopicMetacharacters(value: string): boolean {
  return /[+#/]/.test(value) || value.includes("\u0000");
}
