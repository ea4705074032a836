import { CHUNK_QOS } from "../../shared/chunk-frame.js";
import type { ChunkRequest } from "../../shared/schemas/chunks.js";
import type { Topics } from "../../shared/topics.js";
import type { MqttLink } from "./mqtt-link.js";

/** What the downloader needs from a transport: the pull protocol of architecture.md §4, nothing more. */
export interface ChunkChannel {
  connected(): boolean;
  request(req: ChunkRequest): void;
  onFrame(cb: (frame: Buffer) => void): () => void;
  onConnectionChange(cb: (connected: boolean) => void): () => void;
}

export function mqttChunkChannel(link: MqttLink, topics: Topics, deviceId: string): ChunkChannel {
  const reqTopic = topics.device(deviceId, "chunks/req");
  const resTopic = topics.device(deviceId, "chunks/res");
  return {
    connected: () => link.state() === "connected",
    // QoS 0: the downloader's reqId, timeout and retry are the acknowledgement (CHUNK_QOS).
    request: (req) => link.publish(reqTopic, JSON.stringify(req), { qos: CHUNK_QOS }),
    onFrame: (cb) => link.onMessage((topic, payload) => topic === resTopic && cb(payload)),
    onConnectionChange: (cb) => link.onState((s) => cb(s === "connected")),
  };
}
