import { DeviceIdSchema } from "../../shared/schemas/common.js";
import { DEVICE_PUBLISHES, DEVICE_SUBSCRIBES, type Topics } from "../../shared/topics.js";

/** Who is on the other end of a broker connection, decided once at CONNECT. */
export type Identity = { kind: "server" } | { kind: "device"; deviceId: string };

export function isValidDeviceUsername(username: string): boolean {
  return DeviceIdSchema.safeParse(username).success;
}

/**
 * Pure ACL (DESIGN §4): a device publishes only on its own DEVICE_PUBLISHES topics and subscribes
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
