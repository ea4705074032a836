import type { Topics } from "../../shared/topics.js";
import type { Transport } from "../broker/transport.js";

type DeviceHandler = (deviceId: string, payload: Buffer) => void;

/**
 * The server's subscriptions to device topics, each routed to its handlers by device id. With
 * `shareGroup` (issue 14, replicas) every filter is an MQTT shared subscription: the broker hands
 * each device message to one replica of the group. Retained presence and reports are then not
 * re-sent at subscribe (MQTT 5 §4.8.2: no retained messages for shared subscriptions), which the
 * store makes up for: it already holds the last ones any replica received.
 */
export async function subscribeDevicePlane(deps: {
  transport: Transport;
  topics: Topics;
  shareGroup?: string;
  /** Reports and events may move a rollout on (a verdict, a failure): `poke` plans right away. */
  onReported: DeviceHandler[];
  onEvent: DeviceHandler[];
  onPresence: DeviceHandler;
  onChunkRequest: DeviceHandler;
  onTelemetry: DeviceHandler;
  poke(): void;
}): Promise<void> {
  const { transport, topics } = deps;
  const opts = deps.shareGroup ? { shareGroup: deps.shareGroup } : {};
  const route = (handler: DeviceHandler) => (topic: string, payload: Buffer) => {
    const t = topics.parse(topic);
    if (t) handler(t.deviceId, payload);
  };
  const thenPlan =
    (handlers: DeviceHandler[]): DeviceHandler =>
    (deviceId, payload) => {
      for (const h of handlers) h(deviceId, payload);
      deps.poke();
    };
  await transport.subscribe(topics.allDevices("reported"), route(thenPlan(deps.onReported)), opts);
  await transport.subscribe(topics.allDevices("presence"), route(deps.onPresence), opts);
  await transport.subscribe(topics.allDevices("events"), route(thenPlan(deps.onEvent)), opts);
  await transport.subscribe(topics.allDevices("chunks/req"), route(deps.onChunkRequest), opts);
  await transport.subscribe(topics.allDevices("telemetry"), route(deps.onTelemetry), opts);
}
