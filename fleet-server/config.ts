import { z } from "zod";
import type { Logger } from "../shared/logger.js";
import { DEFAULT_TOPIC_PREFIX } from "../shared/topics.js";

const Port = z.number().int().min(0).max(65535);

/** Options of `startFleetServer` (and, via the CLI, of the `fleet-server` command). */
export const FleetServerConfigSchema = z.object({
  dataDir: z.string().min(1),
  /** 0 = pick a free port (tests). */
  httpPort: Port.default(8080),
  httpHost: z.string().min(1).default("127.0.0.1"),
  /** Embedded broker TCP port; 0 = pick a free port. Ignored with `mqttUrl`. */
  mqttPort: Port.default(1883),
  /** Embedded broker bind address; defaults to `httpHost`. */
  mqttHost: z.string().min(1).optional(),
  /** External broker (Mosquitto, EMQX, ...) instead of the embedded one. */
  mqttUrl: z.url({ protocol: /^(mqtts?|wss?|tcp|ssl)$/ }).optional(),
  mqttUsername: z.string().min(1).optional(),
  mqttPassword: z.string().optional(),
  topicPrefix: z.string().min(1).default(DEFAULT_TOPIC_PREFIX),
  /**
   * Cap on bundle bytes served per second to one device over MQTT chunks (metered cellular
   * links, shared broker bandwidth). Unset = unlimited.
   */
  deviceBandwidthBytesPerSec: z.number().int().min(1024).optional(),
  /** Upper bound for `POST /v1/uploads`. */
  maxUploadBytes: z
    .number()
    .int()
    .min(1)
    .default(1024 ** 3),
});
export type FleetServerConfig = z.infer<typeof FleetServerConfigSchema>;
export type FleetServerOptions = z.input<typeof FleetServerConfigSchema> & { log?: Logger };

/** A host to put in a URL others can dial: wildcard binds are reached via loopback locally. */
export function dialHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
