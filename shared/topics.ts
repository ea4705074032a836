import { DeviceIdSchema } from "./schemas/common.js";

export const DEFAULT_TOPIC_PREFIX = "fleet/v1";

export type DeviceTopic =
  | "desired"
  | "reported"
  | "presence"
  | "events"
  | "telemetry"
  | "telemetry/ack"
  | "chunks/req"
  | "chunks/res";

/** Topics a device may publish to / subscribe to (architecture.md §4); the broker ACL follows these lists. */
export const DEVICE_PUBLISHES: readonly DeviceTopic[] = ["reported", "presence", "events", "telemetry", "chunks/req"];
export const DEVICE_SUBSCRIBES: readonly DeviceTopic[] = ["desired", "telemetry/ack", "chunks/res"];

export interface Topics {
  prefix: string;
  device(id: string, kind: DeviceTopic): string;
  trustRoot(): string;
  /** Wildcard the server subscribes to for one kind across all devices. */
  allDevices(kind: DeviceTopic): string;
  /** Parses `prefix/d/{id}/{kind}`; null when the topic is not a device topic. */
  parse(topic: string): { deviceId: string; kind: DeviceTopic } | null;
}

const KINDS = new Set<string>([
  "desired",
  "reported",
  "presence",
  "events",
  "telemetry",
  "telemetry/ack",
  "chunks/req",
  "chunks/res",
]);

export function createTopics(prefix: string = DEFAULT_TOPIC_PREFIX): Topics {
  if (prefix.includes("+") || prefix.includes("#") || prefix.endsWith("/")) {
    throw new Error(`invalid topic prefix: ${prefix}`);
  }
  const base = `${prefix}/d/`;
  return {
    prefix,
    device(id, kind) {
      DeviceIdSchema.parse(id);
      return `${base}${id}/${kind}`;
    },
    trustRoot: () => `${prefix}/trust/root`,
    allDevices: (kind) => `${base}+/${kind}`,
    parse(topic) {
      if (!topic.startsWith(base)) return null;
      const rest = topic.slice(base.length);
      const slash = rest.indexOf("/");
      if (slash <= 0) return null;
      const deviceId = rest.slice(0, slash);
      const kind = rest.slice(slash + 1);
      if (!KINDS.has(kind) || !DeviceIdSchema.safeParse(deviceId).success) return null;
      return { deviceId, kind: kind as DeviceTopic };
    },
  };
}
