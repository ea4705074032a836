import { z } from "zod";

/**
 * `mqtt` in the agent config: the timing of the agent's MQTT link (agent/transport/mqtt-link.ts;
 * docs/operations.md "MQTT link timing"). Issue 23: these were constants in the link; a device on a
 * NAT that forgets idle flows within a minute, or a fleet whose broker sits behind a slow
 * satellite link, needs other values without a rebuild. The defaults are the former constants.
 */
export const DEFAULT_MQTT_TIMING = {
  /** MQTT keepalive: a half-open connection is noticed ~1.5 keepalives after the last traffic. */
  keepaliveSec: 60,
  /** How long one connection attempt (TCP, TLS, CONNECT/CONNACK) may take. */
  connectTimeoutMs: 10_000,
  /** Full-jitter exponential backoff between reconnect attempts: random(0, min(cap, base * 2^n)). */
  reconnect: { baseMs: 500, capMs: 30_000 },
  /** Publishes kept while disconnected; later ones are dropped until the next connect. */
  maxQueuedOffline: 100,
} as const;

export const MqttTimingSchema = z
  .object({
    // The MQTT 3.1.1 field is 16 bits; below 5 s a busy device's event loop could miss its own pings.
    keepaliveSec: z.number().int().min(5).max(65_535).default(DEFAULT_MQTT_TIMING.keepaliveSec),
    connectTimeoutMs: z.number().int().min(1000).max(300_000).default(DEFAULT_MQTT_TIMING.connectTimeoutMs),
    reconnect: z
      .object({
        baseMs: z.number().int().min(10).max(600_000).default(DEFAULT_MQTT_TIMING.reconnect.baseMs),
        capMs: z.number().int().min(100).max(3_600_000).default(DEFAULT_MQTT_TIMING.reconnect.capMs),
      })
      .strict()
      .superRefine((r, ctx) => {
        if (r.capMs < r.baseMs) {
          ctx.addIssue({ code: "custom", path: ["capMs"], message: `must be >= baseMs (${r.baseMs})` });
        }
      })
      .prefault({}),
    // 0: nothing is queued while offline (every publish made then is dropped).
    maxQueuedOffline: z.number().int().min(0).max(100_000).default(DEFAULT_MQTT_TIMING.maxQueuedOffline),
  })
  .strict()
  .prefault({});
export type MqttTiming = z.infer<typeof MqttTimingSchema>;
